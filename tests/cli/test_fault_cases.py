"""The cases of issue 17, one test (or more) each: what a hostile user broke, kept broken-proof.

Each test failed on the branch point of that issue (its closing note lists them):

 1 run files of two databases collide          13 a double Ctrl-C promised a resume
 2 a run resumed another database's run         14 CSV formula injection
 3 a checkpoint loaded without its checksum     15 rich markup in the terminal table
 4 two resumes of one run both proceed          16 Markdown: newlines, HTML, escapes
 5 resume of --procs 2 ran one process *        17 mathtext crashed --plots
 6 SIGTERM to sweep --workers 2 orphaned them * 18 a --storage password in a message
 7 --procs 2 + SIGTERM: 130 and a traceback *   19 sweep best printed another command
 8 a torn journal record broke the study        20 a locked database: a traceback
 9 a read-only database broke the read commands 21 huge seeds and ids: tracebacks
10 a read-only database: pretrain traceback     22 non-UTF-8, version rows, --storage
11 incompatible checkpoints: tracebacks         23 -o, --plots, --protocol, baseline
12 SIGTERM during an evaluation left it RUNNING 24 bench --no-record crashed

(* with real process trees: ``test_fault_processes.py``; 23's baseline: ``tests/sweep``.)
"""

from __future__ import annotations

import csv
import io
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from sslbench.cli import main
from sslbench.errors import RunKilled
from sslbench.store import Store

Rows = Callable[[Path], dict[str, list[tuple]]]  # the fixture table_rows (tests/conftest.py)
# 1024 synthetic images, 4 steps of 256, a width-8 ConvNet, no per-epoch monitor: seconds a run
TINY = ["--dataset", "synthetic", "--epochs", "1", "--eval", "none", "--quiet",
        "train.batch_size=256", "model.width=8", "eval.diagnostics.enabled=false",
        "eval.knn.monitor_every=0"]


def _one_line(capfd: pytest.CaptureFixture[str], prefix: str = "error: ") -> str:
    """The single stderr line of a refused command (no traceback anywhere)."""
    captured = capfd.readouterr()
    lines = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err + captured.out, captured.err
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(prefix), lines[0]
    return lines[0]


def _checkpoint(db: Path, run_id: int = 1) -> Path:
    with Store.open(str(db), create=False) as store:
        run = store.get_run(run_id)
    return Path(run.run_dir or "") / "checkpoint.pt"


# -- 1-3, 13: run files never cross databases; a checkpoint is loaded only when verified -------


@pytest.fixture(scope="module")
def two_databases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """a.sqlite and b.sqlite, each with a COMPLETED SimCLR run 1 (different seeds), both told to
    keep their run folders in the same ``shared/`` folder."""
    folder = tmp_path_factory.mktemp("two")
    for name, seed in (("a", "0"), ("b", "1")):
        assert main(["pretrain", "simclr", *TINY, "--seed", seed, "--db",
                     str(folder / f"{name}.sqlite"), f"train.output_dir={folder / 'shared'}"]) == 0
    return folder


def test_case01_two_databases_sharing_an_output_folder_keep_their_own_files(
        two_databases: Path) -> None:
    a, b = _checkpoint(two_databases / "a.sqlite"), _checkpoint(two_databases / "b.sqlite")
    assert a != b and a.parent.parent == b.parent.parent == two_databases / "shared"
    with Store.open(str(two_databases / "a.sqlite"), create=False) as store:
        run = store.get_run(1)
    assert a.parent.name == run.uid and len(run.uid) == 32
    assert torch.load(a, weights_only=True)["run_uid"] == run.uid  # the file names its owner
    recorded = next(x for x in run.artifacts if x.name == "checkpoint")
    from sslbench.files import file_sha256

    assert recorded.sha256 == file_sha256(a)  # b's run did not overwrite a's checkpoint


def test_case02_a_run_killed_before_its_first_checkpoint_never_resumes_another_databases_run(
        two_databases: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str], table_rows: Rows) -> None:
    c = tmp_path / "c.sqlite"
    a_checkpoint = _checkpoint(two_databases / "a.sqlite")
    before = a_checkpoint.read_bytes()

    def double_ctrl_c(*args: object, **kwargs: object) -> None:
        raise RunKilled("stopped at once by second signal SIGINT; the last checkpoint is kept", 2)

    monkeypatch.setattr("sslbench.run.pretrain.pretrain", double_ctrl_c)
    assert main(["pretrain", "simclr", *TINY, "--db", str(c),
                 f"train.output_dir={two_databases / 'shared'}"]) == 130
    capfd.readouterr()
    monkeypatch.undo()
    rows = table_rows(c)
    assert main(["resume", "1", "--db", str(c), "--quiet"]) == 2
    assert "no checkpoint" in _one_line(capfd)
    assert table_rows(c) == rows and a_checkpoint.read_bytes() == before


def test_case13_a_run_stopped_before_its_first_checkpoint_is_not_promised_a_resume(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def double_ctrl_c(*args: object, **kwargs: object) -> None:
        raise RunKilled("stopped at once by second signal SIGINT; the last checkpoint is kept", 2)

    monkeypatch.setattr("sslbench.run.pretrain.pretrain", double_ctrl_c)
    db = tmp_path / "r.sqlite"
    assert main(["pretrain", "simclr", *TINY, "--db", str(db)]) == 130
    with Store.open(str(db), create=False) as store:
        run = store.get_run(1)
    assert run.status == "KILLED"
    assert "sslbench resume" not in (run.failure_reason or "")
    assert "no checkpoint" in (run.failure_reason or "")


def test_case03_a_checkpoint_that_is_not_the_recorded_file_is_never_loaded(
        two_databases: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str],
        table_rows: Rows) -> None:
    """b's checkpoint (same method and shapes: it would load without complaint) put in place of
    a's: linear-eval of a's run refuses it by its checksum."""
    shutil.copytree(two_databases, tmp_path / "copy")
    folder = tmp_path / "copy"
    db = folder / "a.sqlite"
    with sqlite3.connect(db) as con:  # the copy's paths point into the copy
        con.execute("update runs set run_dir = replace(run_dir, ?, ?)",
                    (str(two_databases), str(folder)))
        con.execute("update artifacts set path = replace(path, ?, ?)",
                    (str(two_databases), str(folder)))
    con.close()
    shutil.copyfile(_checkpoint(folder / "b.sqlite"), _checkpoint(db))
    rows = table_rows(db)
    assert main(["linear-eval", "1", "--db", str(db), "--epochs", "1"]) == 2
    assert "not the file its run recorded" in _one_line(capfd)
    assert table_rows(db) == rows


# -- 4, 11: claims and incompatible checkpoints ---------------------------------------------


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch SimCLR run 1 stopped by SIGTERM right after its epoch 1 was recorded: KILLED,
    with the checkpoint of epoch 1."""
    folder = tmp_path_factory.mktemp("killed")
    db = folder / "r.sqlite"
    real = Store.log_metrics

    def log_then_sigterm(self: Store, run_id: int, metrics: dict[str, float],
                         **where: int | None) -> None:
        real(self, run_id, metrics, **where)
        os.kill(os.getpid(), signal.SIGTERM)  # deferred by the loop to the step boundary

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Store, "log_metrics", log_then_sigterm)
        argv = ["pretrain", "simclr", *TINY, "--epochs", "2", "--db", str(db)]
        assert main(argv) == 128 + signal.SIGTERM
    with Store.open(str(db), create=False) as store:
        assert store.get_run(1).status == "KILLED"
    return folder


@pytest.fixture
def killed_copy(killed_run: Path, tmp_path: Path) -> Path:
    """A copy of ``killed_run`` (database and files) of the test's own."""
    folder = tmp_path / "copy"
    shutil.copytree(killed_run, folder)
    db = folder / "r.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("update runs set run_dir = replace(run_dir, ?, ?)", (str(killed_run),
                                                                         str(folder)))
        con.execute("update artifacts set path = replace(path, ?, ?)", (str(killed_run),
                                                                        str(folder)))
    con.close()
    return db


def test_case04_of_two_resumes_of_one_run_only_one_proceeds(
        killed_copy: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    """The other `sslbench resume 1` claims the run between this one's checks and its claim."""
    import sslbench.run.pretrain as module

    real = module.load_checkpoint

    def load_while_another_resumes(*args: object, **kwargs: object) -> object:
        state = real(*args, **kwargs)
        with Store.open(str(killed_copy), create=False) as other:
            other.resume_run(1, epochs_done=1)
        return state

    monkeypatch.setattr(module, "load_checkpoint", load_while_another_resumes)
    assert main(["resume", "1", "--db", str(killed_copy), "--quiet"]) == 2
    assert "run 1 is RUNNING" in _one_line(capfd)
    with Store.open(str(killed_copy), create=False) as store:
        run = store.get_run(1)
    assert run.resumes == 1  # the other one's
    assert len([m for m in run.metrics if m.key == "loss"]) == 1  # epoch 1, once


def _recorded_as(db: Path, state: object) -> None:
    """Put ``state`` in the run's checkpoint and record its checksum, as if the run had written
    it (an older sslbench, another architecture): only the checks of its content are left."""
    from sslbench.files import file_sha256

    path = _checkpoint(db)
    torch.save(state, path)
    with sqlite3.connect(db) as con:
        con.execute("update artifacts set sha256 = ?, size_bytes = ? where run_id = 1",
                    (file_sha256(path), path.stat().st_size))
    con.close()


def _incompatible(good: dict) -> dict[str, object]:
    narrow = {k: v[..., :1] if v.ndim else v for k, v in good["method"].items()}
    return {
        "empty": {},
        "no weights": {**good, "method": {}},
        "wrong shapes": {**good, "method": narrow},
        "no optimizer state": {k: v for k, v in good.items() if k != "optimizer"},
        "another optimizer": {**good, "optimizer": {"state": {}, "param_groups": []}},
    }


@pytest.mark.parametrize("kind", ["empty", "no weights", "wrong shapes", "no optimizer state",
                                  "another optimizer"])
def test_case11_an_incompatible_checkpoint_is_one_line_and_leaves_the_run_as_it_was(
        killed_copy: Path, kind: str, capfd: pytest.CaptureFixture[str], table_rows: Rows) -> None:
    good = torch.load(_checkpoint(killed_copy), weights_only=True)
    _recorded_as(killed_copy, _incompatible(good)[kind])
    rows = table_rows(killed_copy)
    assert main(["resume", "1", "--db", str(killed_copy), "--quiet"]) == 2
    assert "checkpoint" in _one_line(capfd)
    assert table_rows(killed_copy) == rows  # still KILLED with its reason, resumes 0


@pytest.mark.parametrize("kind", ["empty", "no weights", "wrong shapes"])
def test_case11_linear_eval_of_an_incompatible_checkpoint_is_one_line(
        killed_copy: Path, kind: str, capfd: pytest.CaptureFixture[str], table_rows: Rows) -> None:
    good = torch.load(_checkpoint(killed_copy), weights_only=True)
    _recorded_as(killed_copy, _incompatible(good)[kind])
    with sqlite3.connect(killed_copy) as con:
        con.execute("update runs set status = 'COMPLETED' where id = 1")
    con.close()
    rows = table_rows(killed_copy)
    assert main(["linear-eval", "1", "--db", str(killed_copy), "--epochs", "1"]) == 2
    assert "checkpoint" in _one_line(capfd)
    assert table_rows(killed_copy) == rows


# -- 12: a signal during an evaluation ----------------------------------------------------------


class _SignalReachedTheTest(Exception):
    pass


def test_case12_sigterm_during_an_evaluation_ends_its_run_killed_not_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sslbench.run.evaluate as evaluate

    real = evaluate.knn_classify

    def sigterm_then_classify(*args: object, **kwargs: object) -> object:
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    def reached(signum: int, frame: object) -> None:  # never the default: it would end pytest
        raise _SignalReachedTheTest

    monkeypatch.setattr(evaluate, "knn_classify", sigterm_then_classify)
    previous = signal.signal(signal.SIGTERM, reached)
    db = tmp_path / "r.sqlite"
    try:
        code = main(["pretrain", "simclr", "--dataset", "synthetic", "--epochs", "1", "--quiet",
                     "train.batch_size=256", "model.width=8", "eval.diagnostics.enabled=false",
                     "eval.knn.monitor_every=0", "--eval", "knn", "--db", str(db)])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 128 + signal.SIGTERM
    with Store.open(str(db), create=False) as store:
        pretrained, knn = store.get_run(1), store.get_run(2)
    assert pretrained.status == "COMPLETED"
    assert knn.status == "KILLED" and "SIGTERM" in (knn.failure_reason or "")
    assert "sslbench resume" not in (knn.failure_reason or "")


# -- 14-17: stored values rendered for where they go ------------------------------------------

HOSTILE = {
    "formula": '=HYPERLINK("http://evil.example","click")',
    "dde": "-2+3+cmd|' /C calc'!A0",
    "markup": "[link=http://evil.example]x[/link] [/]",
    "markdown": "a\nb|c <script>alert(1)</script> **bold**",
    "escape": "\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\\x1b[2J",
    "mathtext": r"$\macro{",
}


@pytest.fixture(scope="module")
def hostile_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One COMPLETED pretrain run per hostile method name, each with a linear child and two
    epochs of loss (so that every report format and figure shows the name)."""
    db = tmp_path_factory.mktemp("hostile") / "r.sqlite"
    with Store.open(str(db)) as store:
        for i, name in enumerate(HOSTILE.values()):
            config = {"method": {"name": name}, "train": {"epochs": 2, "batch_size": 256},
                      "group": name}
            run = store.create_run(kind="pretrain", method=name, dataset=name, config=config,
                                   seed=i, backbone=name, provenance={"host": "h"})
            for epoch, loss in ((1, 2.0), (2, 1.5)):
                store.log_metrics(run, {"loss": loss, "knn_top1": 0.5}, epoch=epoch)
            store.update_summary(run, loss=1.5)
            store.finish_run(run, "COMPLETED", failure_reason=None)
            child = store.create_run(kind="linear", parent_id=run, method=name, dataset=name,
                                     config={"protocol": "linear"}, seed=i,
                                     provenance={"host": "h"})
            store.update_summary(child, linear_top1=0.5 + i / 100)
            store.finish_run(child, "COMPLETED")
    return db


def test_case14_csv_never_starts_a_cell_with_a_formula(
        hostile_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--db", str(hostile_db), "-f", "csv", "--status", "any",
                 "--group-by", "group"]) == 0
    cells = [c for row in csv.reader(io.StringIO(capsys.readouterr().out)) for c in row]
    assert HOSTILE["formula"] not in cells and "'" + HOSTILE["formula"] in cells
    assert not [c for c in cells if c[:1] in ("=", "+", "@") or
                (c.startswith("-") and not c.lstrip("-").replace(".", "").isdigit())]


def test_case15_the_terminal_table_shows_markup_as_text(
        hostile_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--db", str(hostile_db), "--status", "any"]) == 0
    out = capsys.readouterr().out
    assert "[link=http://evil.example]x[/link]" in out and "\x1b" not in out
    assert main(["runs", "list", "--db", str(hostile_db)]) == 0
    assert main(["runs", "show", "5", "--db", str(hostile_db)]) == 0
    assert main(["runs", "show", "9", "--db", str(hostile_db)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b" in out
    assert "\ntrain:\n" in out  # the config, a YAML text, keeps its lines


def test_case16_markdown_and_html_show_the_values_as_text(
        hostile_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--db", str(hostile_db), "-f", "markdown", "--status", "any"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert len(lines) == 2 + len(HOSTILE)  # header, rule, one line per method
    columns = {line.replace("\\|", "").count("|") for line in lines}
    assert len(columns) == 1  # no cell split into two by a '|'
    assert "<script>" not in out and "\x1b" not in out
    assert main(["report", "--db", str(hostile_db), "-f", "html", "--status", "any"]) == 0
    page = capsys.readouterr().out
    assert "<script>" not in page and "\x1b" not in page and "&lt;script&gt;" in page


def test_case17_plots_draw_a_dollar_sign_as_a_dollar_sign(
        hostile_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--db", str(hostile_db), "--status", "any", "--plots",
                 str(tmp_path / "figures")]) == 0
    assert (tmp_path / "figures" / "curve_loss.png").stat().st_size > 0
    assert (tmp_path / "figures" / "accuracy_by_method.png").stat().st_size > 0


# -- 18-19: secrets and commands ---------------------------------------------------------------


def test_case18_a_storage_url_that_cannot_connect_never_prints_its_password(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    url = "postgresql+psycopg://sweeper:s3cr3t-pw@127.0.0.1:1/optuna"
    for argv in (["sweep", "simclr", "--storage", url, "--set", "data.dataset=synthetic"],
                 ["sweep", "status", "s", "--storage", url]):
        with Store.open(str(tmp_path / "r.sqlite")):
            pass
        assert main([*argv, "--db", str(tmp_path / "r.sqlite")]) == 2
        line = _one_line(capfd)
        assert "s3cr3t-pw" not in line and "sweeper:***@" in line


def test_case19_sweep_best_prints_the_command_that_trains_that_run_again(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from sslbench.config import parse_overrides
    from sslbench.resolve import resolve_config

    evil = f"$(touch {tmp_path / 'pwned'}) ; echo"
    cfg = resolve_config("simclr", flags={"data.dataset": "synthetic", "train.epochs": 3,
                                          "optimizer.lr": 0.00123456789,
                                          "method.temperature": 0.123456789,
                                          "data.data_dir": evil, "eval.protocols": ["knn"]})
    db, journal = tmp_path / "r.sqlite", tmp_path / "j.log"
    with Store.open(str(db)) as store:
        run = store.create_run(kind="trial", method="simclr", dataset="synthetic",
                               config=cfg.to_dict(), seed=0, sweep_id="s", trial_number=0)
        store.finish_run(run, "COMPLETED")
    study = optuna.create_study(study_name="s", direction="maximize",
                                storage=JournalStorage(JournalFileBackend(str(journal))))
    study.set_user_attr("method", "simclr")
    study.set_user_attr("objective", "knn")
    study.add_trial(optuna.trial.create_trial(
        params={"optimizer.lr": 0.00123456789}, value=0.5, user_attrs={"run_id": run},
        distributions={"optimizer.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2)}))
    assert main(["sweep", "best", "s", "--storage", str(journal), "--db", str(db)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("# re-run: "))
    words = shlex.split(line.removeprefix("# re-run: "))
    assert words[:5] == ["sslbench", "pretrain", "simclr", "--dataset", "synthetic"]
    again = resolve_config("simclr", flags={"data.dataset": "synthetic"},
                           overrides=[f"{k}={v}" for k, v in parse_overrides(words[5:]).items()])
    assert again.to_dict() == cfg.to_dict()  # every fixed key, every float to the last digit
    subprocess.run(["sh", "-c", "true " + line.removeprefix("# re-run: ")], check=True,
                   cwd=tmp_path)
    assert not (tmp_path / "pwned").exists()  # pasted into a shell, nothing runs


# -- 9, 10: read-only stores -------------------------------------------------------------------


def _with_a_lost_run(db: Path) -> Path:
    """A database with a COMPLETED run 1 (and its linear child 2) and a RUNNING run 3 whose
    process is gone (the next command that may write marks it KILLED)."""
    with Store.open(str(db)) as store:
        done = store.create_run(kind="pretrain", method="simclr", dataset="synthetic",
                                config={"train": {"epochs": 1}}, seed=0)
        store.update_summary(done, loss=1.0)
        store.finish_run(done, "COMPLETED")
        child = store.create_run(kind="linear", parent_id=done, method="simclr",
                                 dataset="synthetic", config={"protocol": "linear"}, seed=0)
        store.update_summary(child, linear_top1=0.5)
        store.finish_run(child, "COMPLETED")
        store.create_run(kind="pretrain", method="byol", dataset="synthetic", config={}, seed=0)
    with sqlite3.connect(db) as con:  # run 3's process: one that no longer exists
        con.execute("update runs set pid = 2147483000 where id = 3")
    con.close()
    return db


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """:func:`_with_a_lost_run` in a folder where neither the file nor the folder can be
    written (immutable, so that even root cannot)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    db = _with_a_lost_run(folder / "r.sqlite")
    if subprocess.run(["chattr", "+i", str(db), str(folder)], capture_output=True).returncode:
        pytest.skip("needs chattr (an ext4-like file system) to make a read-only file for root")
    try:
        yield db
    finally:
        subprocess.run(["chattr", "-i", str(db), str(folder)], check=True)


def test_case09_a_read_only_database_serves_every_read_command(
        read_only: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = read_only.read_bytes()
    db = ["--db", str(read_only)]
    for argv in (["runs", "list"], ["runs", "show", "3"], ["runs", "compare", "1", "3"],
                 ["report"], ["report", "-f", "json", "--status", "any"]):
        assert main([*argv, *db]) == 0, argv
    out = capsys.readouterr().out
    assert "simclr" in out and "byol" in out
    assert read_only.read_bytes() == before


def test_case09_a_read_only_database_of_an_older_schema_is_read_through_a_snapshot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    db = folder / "old.sqlite"
    shutil.copyfile(Path(__file__).parents[1] / "store" / "fixtures" / "sslbench_0001.sqlite", db)
    if subprocess.run(["chattr", "+i", str(db), str(folder)], capture_output=True).returncode:
        pytest.skip("needs chattr")
    try:
        assert main(["runs", "list", "--db", str(db)]) == 0
        assert "vicreg" in capsys.readouterr().out
    finally:
        subprocess.run(["chattr", "-i", str(db), str(folder)], check=True)


def test_case10_recording_into_a_read_only_database_is_one_line(
        read_only: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["pretrain", "simclr", *TINY, "--db", str(read_only)]) == 2
    assert "read-only" in _one_line(capfd)
    assert main(["db", "upgrade", "--db", str(read_only)]) == 2
    assert "read-only" in _one_line(capfd)


# -- 20-23: one line, not a traceback -----------------------------------------------------------


def test_case20_a_database_locked_by_another_writer_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    import sslbench.store.db as store_db

    db = _with_a_lost_run(tmp_path / "locked.sqlite")  # run 3 is to be marked KILLED: a write
    monkeypatch.setattr(store_db, "SQLITE_PRAGMAS", tuple(
        "PRAGMA busy_timeout=200" if p.startswith("PRAGMA busy_timeout") else p
        for p in store_db.SQLITE_PRAGMAS))
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        assert main(["runs", "list", "--db", str(db)]) == 1
        assert "database is locked" in _one_line(capfd, "failed: ")
    finally:
        writer.execute("ROLLBACK")
        writer.close()


@pytest.mark.parametrize("argv", [
    ["pretrain", "simclr", "--seed", "4294967296", "--dry-run"],
    ["pretrain", "simclr", "optimizer.lr=1e999", "--dry-run"],
    ["pretrain", "simclr", "train.epochs=99999999999999999999999", "--dry-run"],
    ["resume", "99999999999999999999999"],
    ["linear-eval", "99999999999999999999999"],
    ["knn", "-5"],
    ["runs", "show", "99999999999999999999999"],
    ["runs", "compare", "1", "99999999999999999999999"],
    ["runs", "list", "--limit", "99999999999999999999999"],
], ids=lambda argv: " ".join(argv))
def test_case21_huge_numbers_are_one_line(
        tmp_path: Path, argv: list[str], capfd: pytest.CaptureFixture[str],
        table_rows: Rows) -> None:
    db = _with_a_lost_run(tmp_path / "r.sqlite")
    assert main(["runs", "list", "--db", str(db)]) == 0  # marks run 3 KILLED
    capfd.readouterr()
    rows = table_rows(db)
    assert main([*argv, "--db", str(db)]) == 2
    _one_line(capfd)
    assert table_rows(db) == rows


def test_case22_files_that_are_not_what_they_claim_are_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str], table_rows: Rows) -> None:
    (tmp_path / "latin1.yaml").write_bytes("optimizer.lr: 0.1  # café\n".encode("latin-1"))
    (tmp_path / "garbage.log").write_bytes(os.urandom(512).replace(b"\n", b""))
    (tmp_path / "folder").mkdir()
    db = tmp_path / "r.sqlite"
    with Store.open(str(db)):
        pass
    cases = [
        (["pretrain", "simclr", "--config", "latin1.yaml", "--dry-run"], "UTF-8"),
        (["sweep", "simclr", "--space", "latin1.yaml"], "UTF-8"),
        (["sweep", "status", "s", "--storage", "folder"], "folder"),
        (["sweep", "status", "s", "--storage", "garbage.log"], "not an Optuna journal"),
        (["sweep", "status", "s", "--storage", "no/such/j.log"], "does not exist"),
    ]
    monkeypatch.chdir(tmp_path)
    for argv, needle in cases:
        rows = table_rows(db)
        assert main([*argv, "--db", str(db)]) == 2, argv
        assert needle in _one_line(capfd), argv
        assert table_rows(db) == rows
    assert not (tmp_path / "no").exists()  # --storage creates no folder


def test_case22_a_version_table_with_two_rows_is_one_line(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "r.sqlite"
    with Store.open(str(db)):
        pass
    with sqlite3.connect(db) as con:
        con.execute("insert into sslbench_alembic_version values ('sslbench_0001')")
    con.close()
    before = db.read_bytes()
    assert main(["runs", "list", "--db", str(db)]) == 2
    assert "revisions" in _one_line(capfd)
    assert db.read_bytes() == before


def test_case23_report_outputs_that_cannot_be_written_are_one_line(
        hostile_db: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("x")
    cases = [
        (["-f", "csv", "-o", str(tmp_path / "missing" / "r.csv")], 2, "does not exist"),
        (["-f", "csv", "-o", str(tmp_path)], 2, "is a folder"),
        (["-f", "csv", "-o", "/dev/full"], 1, "No space left on device"),
        (["--plots", str(tmp_path / "a-file")], 2, "is a file"),
        (["--protocol", "bogus"], 2, "bogus"),
    ]
    for argv, code, needle in cases:
        assert main(["report", "--db", str(hostile_db), "--status", "any", *argv]) == code, argv
        assert needle in _one_line(capfd, "error: " if code == 2 else "failed: "), argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


# -- 8: a torn journal record --------------------------------------------------------------------


def test_case08_a_torn_last_record_of_the_journal_leaves_the_study_readable(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import optuna

    from sslbench.sweep.study import open_storage

    db, journal = tmp_path / "r.sqlite", tmp_path / "j.log"
    with Store.open(str(db)):
        pass
    storage, _ = open_storage(str(journal), f"sqlite:///{db}")
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.set_user_attr("method", "simclr")
    study.enqueue_trial({"x": 1.0})
    with journal.open("ab") as file:
        file.write(b'{"op_code": 5, "worker_id": "dead-0", "study_id": 0, "dat')  # killed here
    storage, _ = open_storage(str(journal), f"sqlite:///{db}")  # the next sweep command
    optuna.load_study(study_name="s", storage=storage).enqueue_trial({"x": 2.0})
    assert main(["sweep", "status", "s", "--storage", str(journal), "--db", str(db)]) == 0
    assert "waiting 2" in capsys.readouterr().out


# -- 24: bench --no-record ---------------------------------------------------------------------


def test_case24_a_benchmark_with_no_record_runs_and_keeps_nothing(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "time-to-accuracy", "simclr", "--dataset", "synthetic",
                 "--budgets", "1s", "--set", "model.width=8", "--set", "train.plan_steps=3",
                 "--set", "train.batch_size=256", "--set", "eval.linear.epochs=1",
                 "--gpus", "0", "--no-record"]) == 0
    assert "linear top-1" in capsys.readouterr().out
    assert list(workdir.iterdir()) == []
