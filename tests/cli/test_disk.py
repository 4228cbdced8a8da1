"""`sslbench runs delete`, `sslbench runs gc` and the disk column of `runs list`: files and rows go
together, `--dry-run` changes nothing, and no row is left without its files nor a file without
its row."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sslbench.cli import main
from sslbench.store import Store
from sslbench.store.files import apply_removal, plan_removal
from sslbench.store.models import Run


@pytest.fixture
def db(tmp_path: Path, trained_run: Callable[..., int]) -> str:
    """1, 3: COMPLETED SimCLR pretrain runs with checkpoints, linear top-1 0.8 (child 2) and 0.7
    (child 4); 5: a pretrain run FAILED 10 days ago with a folder; 6: a sweep trial KILLED 10
    days ago with a folder; 7: a RUNNING pretrain run; 8: a trial recording run 1's folder."""
    path = str(tmp_path / "r.sqlite")
    root = tmp_path / "runs"
    common = {"method": "simclr", "dataset": "synthetic", "config": {}, "seed": 0}
    with Store.open(path) as store:
        for score in (0.8, 0.7):
            parent = trained_run(path, root)
            child = store.create_run(kind="linear", parent_id=parent, **common)
            store.log_metrics(child, {"linear_top1": score})
            store.update_summary(child, linear_top1=score)
            store.finish_run(child, "COMPLETED")
        for kind, status, sweep in (("pretrain", "FAILED", None), ("trial", "KILLED", "s")):
            run = store.create_run(kind=kind, sweep_id=sweep, trial_number=0 if sweep else None,
                                   **common)
            (root / str(run)).mkdir()
            (root / str(run) / "checkpoint.pt").write_bytes(b"\0" * 1000)
            store.set_run_dir(run, root / str(run))
            store.finish_run(run, status, failure_reason="test")
        store.create_run(kind="pretrain", **common)  # 7, RUNNING
        shared = store.create_run(kind="trial", sweep_id="s", trial_number=1, **common)
        store.set_run_dir(shared, root / "1")
        store.finish_run(shared, "COMPLETED")
        with store.bulk_session() as session, session.begin():
            for run_id in (5, 6):
                session.get(Run, run_id).ended_at = datetime.now(UTC) - timedelta(days=10)
    return path


def _snapshot(db: str, root: Path) -> tuple[dict[str, list[tuple]], dict[Path, bytes]]:
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        rows = {t: sorted(con.execute(f"select * from {t}").fetchall(), key=repr) for t in tables}
    con.close()
    return rows, {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _consistent(db: str, root: Path) -> None:
    """Every recorded file exists; every file under the runs root is recorded by a row."""
    with Store.open(db) as store:
        runs = [store.get_run(r.id) for r in store.list_runs()]
    recorded = [Path(r.run_dir) for r in runs if r.run_dir]
    for run in runs:
        for artifact in run.artifacts:
            assert Path(artifact.path).is_file(), (run.id, artifact.path)
    for path in root.rglob("*"):
        assert any(path == d or path.is_relative_to(d) for d in recorded), path


def test_dry_run_changes_nothing(db: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    before = _snapshot(db, tmp_path / "runs")
    assert main(["runs", "delete", "3", "--db", db, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would free" in out and "nothing removed" in out
    assert [line.split()[0] for line in out.splitlines()[1:3]] == ["3", "4"]
    assert main(["runs", "gc", "--failed-older-than", "7", "--keep-best", "1", "--db", db,
                 "--dry-run"]) == 0
    assert _snapshot(db, tmp_path / "runs") == before


def test_delete_removes_the_run_its_evaluations_and_its_files(
        db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "runs" / "3"
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert main(["runs", "delete", "3", "--db", db]) == 0
    assert f"freed {size / 1024:.1f} KiB: 2 rows deleted" in capsys.readouterr().out
    with Store.open(db) as store:
        assert {r.id for r in store.list_runs()} == {1, 2, 5, 6, 7, 8}
    assert not folder.exists()
    with sqlite3.connect(db) as con:  # no metric or artifact row of a deleted run is left
        assert con.execute("select count(*) from metrics where run_id in (3, 4)").fetchone() == \
            (0,)
        assert con.execute("select count(*) from artifacts where run_id = 3").fetchone() == (0,)
    con.close()
    _consistent(db, tmp_path / "runs")


def test_a_sweep_trial_keeps_its_row_and_shared_folders_stay(
        db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "delete", "6", "1", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "files; row kept (sweep trial)" in out
    assert f"kept {tmp_path / 'runs' / '1'}" in out  # run 8, which stays, records it too
    with Store.open(db) as store:
        trial = store.get_run(6)
        assert trial.status == "KILLED" and trial.run_dir is None and trial.artifacts == []
        assert {r.id for r in store.list_runs()} == {3, 4, 5, 6, 7, 8}
    assert not (tmp_path / "runs" / "6").exists() and (tmp_path / "runs" / "1").is_dir()
    _consistent(db, tmp_path / "runs")


def test_gc_drops_old_failures_and_the_checkpoints_of_all_but_the_best(
        db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "gc", "--failed-older-than", "7", "--keep-best", "1", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "not in the best 1 of simclr on synthetic by linear" in out
    with Store.open(db) as store:
        assert {r.id for r in store.list_runs()} == {1, 2, 3, 4, 6, 7, 8}  # 5 deleted
        assert store.get_run(3).artifacts == [] and store.get_run(3).status == "COMPLETED"
        assert store.get_run(1).artifacts  # the best one keeps its checkpoint
        assert store.get_run(4).summary["linear_top1"] == 0.7  # its numbers stay
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["1"]
    _consistent(db, tmp_path / "runs")
    assert main(["report", "--db", db, "--format", "csv", "-o", str(tmp_path / "r.csv")]) == 0
    assert ",2,1," in (tmp_path / "r.csv").read_text()  # both runs still in the leaderboard


@pytest.mark.parametrize(("argv", "needle"), [
    (["runs", "delete", "7"], "RUNNING"),
    (["runs", "delete", "99"], "99"),
    (["runs", "gc"], "say what to collect"),
])
def test_bad_input_changes_nothing(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   argv: list[str], needle: str) -> None:
    before = _snapshot(db, tmp_path / "runs")
    assert main([*argv, "--db", db]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert _snapshot(db, tmp_path / "runs") == before


def test_a_failed_transaction_puts_the_files_back(db: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    before = _snapshot(db, tmp_path / "runs")

    def fail(*args: object) -> None:
        raise RuntimeError("database went away")

    with Store.open(db) as store:
        removal = plan_removal(store, delete=[3, 5])
        assert len(removal.paths) == 2
        monkeypatch.setattr(store, "remove_runs", fail)
        with pytest.raises(RuntimeError):
            apply_removal(store, removal)
    assert _snapshot(db, tmp_path / "runs") == before


def test_runs_list_shows_disk_usage(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "list", "--db", db]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "disk"
    by_id = {line.split()[0]: line.split()[-2:] for line in lines[1:]}
    assert by_id["5"] == ["1000", "B"] and by_id["2"][-1] == "-"
    assert by_id["1"][-1] == "KiB"
