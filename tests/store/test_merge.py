"""`sslbench db merge`: runs of one database copied into another with their rows, new ids and
remapped parents; merging again copies nothing; bad input is refused with nothing written."""

from __future__ import annotations

import math
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from sslbench.cli import main
from sslbench.errors import UserError
from sslbench.store import Store
from sslbench.store.db import read_snapshot
from sslbench.store.merge import merge_runs
from sslbench.store.models import Run

FIXTURE_0001 = Path(__file__).parent / "fixtures" / "sslbench_0001.sqlite"
PROVENANCE = {"git_commit": "0123abcd", "git_dirty": False, "host": "elsewhere",
              "versions": {"python": "3.11.7"}}


def _run(store: Store, kind: str = "pretrain", **fields: Any) -> int:
    return store.create_run(kind=kind, method="byol", dataset="cifar10", config={"lr": 0.3},
                            seed=0, provenance=PROVENANCE, **fields)


@pytest.fixture(scope="module")
def source_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 pretrain (metrics with a NaN, a checkpoint, a summary) → 2 linear → 3 kNN;
    4 FAILED pretrain → 5 KILLED linear; 6 PRUNED trial whose parent is 7, a later run."""
    folder = tmp_path_factory.mktemp("source")
    path = folder / "source.sqlite"
    checkpoint = folder / "checkpoint.pt"
    checkpoint.write_bytes(b"weights")
    with Store.open(str(path)) as store:
        one = _run(store, runs_root=folder)
        for epoch in (1, 2, 3):
            store.log_metrics(one, {"loss": 1.0 / epoch, "knn_top1": math.nan}, epoch=epoch)
        store.add_artifact(one, "checkpoint", checkpoint)
        store.update_summary(one, loss=0.33)
        store.finish_run(one, "COMPLETED")
        two = _run(store, "linear", parent_id=one)
        store.log_metrics(two, {"linear_top1": 0.8}, step=10)
        store.finish_run(two, "COMPLETED")
        three = _run(store, "knn", parent_id=two)
        store.finish_run(three, "COMPLETED")
        four = _run(store)
        store.finish_run(four, "FAILED", failure_reason="non-finite loss at step 3")
        five = _run(store, "linear", parent_id=four)
        store.finish_run(five, "KILLED", failure_reason="SIGTERM")
        six = _run(store, "trial", sweep_id="s", trial_number=0)
        store.finish_run(six, "PRUNED")
        seven = _run(store)
        store.finish_run(seven, "COMPLETED")
        with store.bulk_session() as session, session.begin():
            session.get(Run, six).parent_id = seven
    return path


@pytest.fixture
def source(tmp_path: Path, source_template: Path) -> Path:
    """A copy of the source database, for this test alone."""
    path = tmp_path / "source.sqlite"
    shutil.copyfile(source_template, path)
    return path


def _contents(db: Path) -> dict[str, Any]:
    """Every row but ids, runs known by uid: parents as uids, metrics and artifacts as lists
    per run uid in their order."""
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        uid = dict(con.execute("select id, uid from runs").fetchall())
        runs = {}
        for row in con.execute("select * from runs"):
            fields = dict(row) | {"parent_id": uid.get(row["parent_id"])}
            del fields["id"]
            runs[row["uid"]] = fields
        contents: dict[str, Any] = {"runs": runs}
        for table in ("metrics", "artifacts"):
            rows: dict[str, list[dict[str, Any]]] = {}
            for row in con.execute(f"select * from {table} order by id"):
                fields = dict(row)
                del fields["id"], fields["run_id"]
                rows.setdefault(uid[row["run_id"]], []).append(fields)
            contents[table] = rows
    con.close()
    return contents


def _uids(db: Path) -> dict[int, str]:
    with sqlite3.connect(db) as con:
        uids = dict(con.execute("select id, uid from runs").fetchall())
    con.close()
    return uids


def test_merge_copies_every_run_with_its_rows(
    source: Path, tmp_path: Path, source_template: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "target.sqlite"  # a fresh file: the merge creates it
    before = source.read_bytes()
    assert main(["db", "merge", str(source), "--db", str(target)]) == 0
    assert capsys.readouterr().out == (
        f"copied 7 runs (7 metric rows, 1 artifact) from {source} into {target}; "
        "skipped 0 already there\n")
    assert _contents(target) == _contents(source)
    assert source.read_bytes() == before
    with Store.open(str(target)) as store:  # and it reads back as a store
        pretrain = store.get_run(1)
        assert [m.key for m in pretrain.metrics][:2] == ["loss", "knn_top1"]
        assert math.isnan(pretrain.metrics[1].value)
        assert pretrain.artifacts[0].path == str(source_template.parent / "checkpoint.pt")


def test_merging_into_a_database_with_runs_gives_new_ids(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "target.sqlite"
    with Store.open(str(target)) as store:
        for _ in range(3):
            store.finish_run(_run(store), "COMPLETED")
    result = merge_runs(str(source), str(target))
    # in order, but run 7 before its child 6
    assert result.copied == {1: 4, 2: 5, 3: 6, 4: 7, 5: 8, 7: 9, 6: 10}
    assert (result.metric_rows, result.artifacts, result.skipped) == (7, 1, [])
    merged = _contents(target)["runs"]
    for uid, run in _contents(source)["runs"].items():
        assert merged[uid] == run


def test_merging_twice_copies_nothing(
    source: Path, tmp_path: Path, table_rows: Callable[[Path], dict[str, list[tuple]]]
) -> None:
    target = tmp_path / "target.sqlite"
    merge_runs(str(source), str(target))
    rows = table_rows(target)
    again = merge_runs(str(source), str(target))
    assert (again.copied_runs, again.skipped_runs, again.metric_rows) == (0, 7, 0)
    assert table_rows(target) == rows


def test_a_run_comes_with_its_descendants_only(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "target.sqlite"
    assert main(["db", "merge", str(source), "--db", str(target), "--run", "2"]) == 0
    assert capsys.readouterr().out.endswith(
        "skipped 0 already there; copied without their parent (neither copied nor in the "
        "target): source run 2\n")
    uid = _uids(source)
    runs = _contents(target)["runs"]
    assert set(runs) == {uid[2], uid[3]}
    assert runs[uid[2]]["parent_id"] is None  # its parent, run 1, stayed behind
    assert runs[uid[3]] == _contents(source)["runs"][uid[3]]


def test_a_parent_already_in_the_target_is_linked(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "target.sqlite"
    assert merge_runs(str(source), str(target), [1]).copied == {1: 1, 2: 2, 3: 3}
    with Store.open(str(source)) as store:  # later evaluations of runs 1 and 2
        eight = _run(store, "semisup", parent_id=1)
        nine = _run(store, "linear", parent_id=2)
        for run_id in (eight, nine):
            store.finish_run(run_id, "COMPLETED")
    uid = _uids(source)

    alone = merge_runs(str(source), str(target), [eight])  # run 1 left out, but there by uid
    assert (alone.copied, alone.unparented) == ({eight: 4}, [])
    everything = merge_runs(str(source), str(target))  # run 2 skipped, its new child linked
    assert everything.skipped == [1, 2, 3, eight]
    assert sorted(everything.copied) == [4, 5, 6, 7, nine]
    assert everything.unparented == []
    assert _contents(target) == _contents(source)
    assert _contents(target)["runs"][uid[nine]]["parent_id"] == uid[2]


def _missing(tmp_path: Path, source: Path) -> tuple[list[str], str]:
    return [str(tmp_path / "nowhere.sqlite")], "does not exist"


def _not_sqlite(tmp_path: Path, source: Path) -> tuple[list[str], str]:
    source.write_text("not a database\n" * 100)
    return [str(source)], "is not an sslbench database"


def _foreign_sqlite(tmp_path: Path, source: Path) -> tuple[list[str], str]:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as con:
        con.execute("create table notes (body text)")
    con.close()
    return [str(other)], "is not an sslbench database"


def _empty_file(tmp_path: Path, source: Path) -> tuple[list[str], str]:
    (tmp_path / "empty.sqlite").touch()
    return [str(tmp_path / "empty.sqlite")], "is not an sslbench database"


def _older_schema(tmp_path: Path, source: Path) -> tuple[list[str], str]:
    old = tmp_path / "old.sqlite"
    shutil.copyfile(FIXTURE_0001, old)
    return [str(old)], f"run `sslbench db upgrade --db {old}` first"


def _unknown_run(tmp_path: Path, source: Path) -> tuple[list[str], str]:
    return [str(source), "--run", "1", "--run", "99"], "no run with id 99 in SOURCE"


def _unfinished(tmp_path: Path, source: Path) -> tuple[list[str], str]:
    with Store.open(str(source)) as store:
        _run(store, "linear", parent_id=2)  # RUNNING (elsewhere, heartbeat fresh)
        _run(store, status="QUEUED")
    return [str(source)], "still going: 8 (RUNNING), 9 (QUEUED); wait for them to finish"


def _unfinished_child(tmp_path: Path, source: Path) -> tuple[list[str], str]:
    with Store.open(str(source)) as store:
        _run(store, "linear", parent_id=2)
    return [str(source), "--run", "1"], "still going: 8 (RUNNING)"


@pytest.mark.parametrize("case", [_missing, _not_sqlite, _foreign_sqlite, _empty_file,
                                  _older_schema, _unknown_run, _unfinished, _unfinished_child])
@pytest.mark.parametrize("target_exists", [True, False], ids=["target", "no-target"])
def test_refusals_write_nothing(
    case: Callable[[Path, Path], tuple[list[str], str]], target_exists: bool, source: Path,
    tmp_path: Path, source_template: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "target.sqlite"
    if target_exists:
        shutil.copyfile(source_template, target)  # a database with runs of its own
        with Store.open(str(target)) as store:  # ...and one the source lacks
            store.finish_run(_run(store), "COMPLETED")
    argv, message = case(tmp_path, source)
    sources = {Path(arg): Path(arg).read_bytes() for arg in argv[:1] if Path(arg).exists()}
    target_bytes = target.read_bytes() if target_exists else None
    assert main(["db", "merge", *argv, "--db", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert message in err
    assert (target.read_bytes() if target.exists() else None) == target_bytes
    assert {path: path.read_bytes() for path in sources} == sources


@pytest.mark.parametrize("same", ["path", "symlink"])
def test_merging_a_database_into_itself_is_refused(
    source: Path, tmp_path: Path, same: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = source
    if same == "symlink":
        target = tmp_path / "link.sqlite"
        target.symlink_to(source)
    before = source.read_bytes()
    assert main(["db", "merge", str(source), "--db", str(target)]) == 2
    assert "SOURCE and --db are the same database" in capsys.readouterr().err
    assert source.read_bytes() == before


def test_a_bad_run_id_is_a_usage_error(source: Path, tmp_path: Path) -> None:
    assert main(["db", "merge", str(source), "--db", str(tmp_path / "t.sqlite"),
                 "--run", "0"]) == 2
    assert not (tmp_path / "t.sqlite").exists()


def test_the_source_is_read_from_one_snapshot(source: Path) -> None:
    """What another process commits to SOURCE while a merge reads it is not seen half-way."""
    with read_snapshot(f"sqlite:///{source}") as conn:
        count = text("SELECT COUNT(*) FROM runs")
        assert conn.execute(count).scalar() == 7
        with Store.open(str(source)) as store:
            store.finish_run(_run(store), "COMPLETED")
        assert conn.execute(count).scalar() == 7
        with pytest.raises(OperationalError, match="readonly"):
            conn.execute(text("DELETE FROM metrics"))


@pytest.mark.multiprocess  # starts a PostgreSQL server
def test_merge_to_and_from_postgresql(pg_database: Callable[[str], str], source: Path,
                                      tmp_path: Path) -> None:
    """SQLite → PostgreSQL → SQLite gives back every row; one server database spelled with
    another driver is still the same database."""
    server = pg_database("merge_test")
    assert merge_runs(str(source), server).copied_runs == 7
    with read_snapshot(server) as conn:
        assert conn.execute(text("SHOW transaction_isolation")).scalar() == "repeatable read"
        assert conn.execute(text("SHOW transaction_read_only")).scalar() == "on"
    assert merge_runs(str(source), server).skipped_runs == 7
    back = tmp_path / "back.sqlite"
    assert merge_runs(server, str(back)).copied_runs == 7
    assert _contents(back) == _contents(source)
    with pytest.raises(UserError, match="same database"):
        merge_runs(server.replace("postgresql://", "postgresql+psycopg://"), server)
