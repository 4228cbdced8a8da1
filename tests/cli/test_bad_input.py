"""The catalogue of bad input: every command, one parametrised test.

Each case must exit with code 2, print exactly one line on stderr that names the problem, show no
traceback, and leave the database exactly as it was (every row of every table, and its bytes).
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from sslbench.cli import main
from sslbench.store import Store

# (argv, a word the one-line error must contain). "{dir}" is the test's folder, where the files
# below exist; a case naming its own --db gets no other.
CATALOGUE: list[tuple[list[str], str]] = [
    # pretrain: config keys, types, ranges, files, devices
    (["pretrain", "simclr", "nosuch.key=1"], "unknown config key"),
    (["pretrain", "simclr", "optimizer.lr=fast"], "optimizer.lr"),
    (["pretrain", "simclr", "optimizer.lr=-0.1"], "optimizer.lr"),
    (["pretrain", "simclr", "--batch-size", "0"], "batch_size"),
    (["pretrain", "byol", "method.ema_decay=1.5"], "ema_decay"),
    (["pretrain", "simclr", "method.ema_decay=0.9"], "ema_decay"),
    (["pretrain", "nosuchmethod"], "nosuchmethod"),
    (["pretrain", "simclr", "--dataset", "nosuchdata"], "nosuchdata"),
    (["pretrain", "simclr", "--gpus", "3"], "GPU"),
    (["pretrain", "simclr", "--config", "missing.yaml"], "missing.yaml"),
    (["pretrain", "simclr", "--config", "{dir}/list.yaml"], "list.yaml"),
    (["pretrain", "simclr", "--epochs", "two"], "--epochs"),
    (["pretrain", "simclr", "notakeyvalue"], "key=value"),
    (["pretrain", "simclr", "--batch-size", "4096"], "larger than"),
    (["pretrain", "simclr", "train.output_dir={dir}/a-file/runs"], "output dir"),
    (["pretrain", "simclr", "--db", "{dir}/no/such/folder/r.sqlite"], "does not exist"),
    (["pretrain", "simclr", "--db", "nosuchdriver://host/db"], "database"),
    (["pretrain", "simclr", "--tensorboard", "{dir}/a-file/tb"], "TensorBoard folder"),
    # evaluations: missing runs, wrong kinds, runs without a (readable) checkpoint, label specs
    (["linear-eval", "99"], "99"),
    (["linear-eval", "3"], "pretrain run id"),
    (["linear-eval", "2"], "no final checkpoint"),
    (["linear-eval", "1", "--layer", "stage9"], "stage9"),
    (["knn", "1", "--k", "0"], "k"),
    (["knn", "4"], "no final checkpoint"),
    (["knn", "1", "--eval-dataset", "imagenet"], "imagenet"),
    (["semi-supervised", "1", "--labels", "0%"], "0%"),
    (["semi-supervised", "1", "--labels", "150%"], "150%"),
    (["supervised", "--labels", "lots", "--dataset", "synthetic"], "lots"),
    # resume
    (["resume", "1"], "COMPLETED"),
    (["resume", "2"], "no checkpoint"),
    (["resume", "3"], "pretrain run id"),
    (["resume", "4"], "cannot be read"),
    (["resume", "5"], "sweep"),
    (["resume", "99"], "99"),
    # export: missing runs, runs without an encoder or a checkpoint, formats, output paths
    (["export", "99"], "99"),
    (["export", "3"], "pretrain run id"),
    (["export", "2"], "no final checkpoint"),
    (["export", "1", "--format", "torchvision"], "torchvision"),
    (["export", "1", "--format", "onnx"], "onnx"),
    (["export", "1", "--out", "{dir}/no/such/folder/e.safetensors"], "writable"),
    (["export", "1", "--out", "{dir}"], "folder"),
    (["runs", "export-tensorboard", "1", "99"], "99"),
    (["runs", "delete", "1", "99"], "99"),
    (["runs", "gc"], "--keep-best"),
    (["runs", "gc", "--keep-best", "0"], "--keep-best"),
    (["pretrain", "simclr", "train.keep_checkpoints=sometimes"], "keep_checkpoints"),
    # runs, report, sweep
    (["runs", "show", "99"], "99"),
    (["runs", "compare", "1", "99"], "99"),
    (["runs", "list", "--status", "sleeping"], "sleeping"),
    (["report", "--format", "xml"], "xml"),
    (["report", "--since", "yesterday"], "yesterday"),
    (["sweep", "nosuchmethod"], "nosuchmethod"),
    (["sweep", "simclr", "--space", "{dir}/broken.yaml"], "broken.yaml"),
    (["sweep", "status"], "study name"),
    # databases that are not ours, or not databases
    (["db", "upgrade", "--db", "{dir}/corrupt.sqlite"], "corrupt.sqlite"),
    (["runs", "list", "--db", "{dir}/foreign.sqlite"], "not an sslbench database"),
    (["db", "upgrade", "--db", "{dir}/missing.sqlite"], "no database"),
    (["db", "merge", "{dir}/missing.sqlite"], "does not exist"),
    (["db", "merge", "{dir}/foreign.sqlite"], "not an sslbench database"),
    (["db", "merge", "{dir}/corrupt.sqlite"], "corrupt.sqlite"),
    (["db", "merge", "{dir}/r.sqlite"], "same database"),
]


def _make_files(folder: Path) -> None:
    (folder / "list.yaml").write_text("- just\n- a list\n")
    (folder / "a-file").write_text("a file, not a folder")
    (folder / "broken.yaml").write_text("method: simclr\nparams: [unclosed\n")
    (folder / "corrupt.sqlite").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 16)
    with sqlite3.connect(folder / "foreign.sqlite") as con:
        con.execute("create table invoices (id integer primary key, total real)")
        con.execute("insert into invoices values (1, 9.5)")
    con.close()


@pytest.fixture(scope="module")
def catalogue_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs to be wrong about: 1 COMPLETED pretrain (a real 1-epoch one, with its checkpoint),
    2 a KILLED pretrain that never wrote a checkpoint, 3 a linear child of 1, 4 a KILLED pretrain
    whose checkpoint is truncated, 5 a FAILED sweep trial."""
    folder = tmp_path_factory.mktemp("catalogue")
    db = folder / "r.sqlite"
    assert main(["pretrain", "simclr", "--dataset", "synthetic", "--db", str(db), "--quiet",
                 "--epochs", "1", "--eval", "none", f"train.output_dir={folder / 'runs'}"]) == 0
    with Store.open(str(db)) as store:
        first = store.get_run(1)
        common = {"method": "simclr", "dataset": "synthetic", "config": first.config, "seed": 0}
        two = store.create_run(kind="pretrain", **common)
        store.set_run_dir(two, folder / "runs" / "2")
        store.finish_run(two, "KILLED", failure_reason="interrupted (Ctrl-C)")
        three = store.create_run(kind="linear", parent_id=1, **common)
        store.finish_run(three, "COMPLETED")
        four = store.create_run(kind="pretrain", **common)
        (folder / "runs" / "4").mkdir()
        good = (Path(first.run_dir or "") / "checkpoint.pt").read_bytes()
        (folder / "runs" / "4" / "checkpoint.pt").write_bytes(good[: len(good) // 2])
        store.set_run_dir(four, folder / "runs" / "4")
        store.add_artifact(four, "checkpoint", folder / "runs" / "4" / "checkpoint.pt")
        store.finish_run(four, "KILLED", failure_reason="process 1 on h died")
        five = store.create_run(kind="trial", sweep_id="s", trial_number=0, **common)
        store.set_run_dir(five, first.run_dir or "")
        store.finish_run(five, "FAILED", failure_reason="worker died")
    return db


def test_the_catalogue_is_large() -> None:
    assert len(CATALOGUE) >= 25
    assert {argv[0] for argv, _ in CATALOGUE} >= {
        "pretrain", "linear-eval", "knn", "semi-supervised", "supervised", "resume", "runs",
        "report", "sweep", "db", "export"}


@pytest.mark.parametrize(("argv", "needle"), CATALOGUE,
                         ids=[" ".join(a).replace("{dir}/", "") for a, _ in CATALOGUE])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, catalogue_db: Path,
    capfd: pytest.CaptureFixture[str], argv: list[str], needle: str,
    table_rows: Callable[[Path], dict[str, list[tuple]]],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SSLBENCH_DB", raising=False)
    _make_files(tmp_path)
    db = tmp_path / "r.sqlite"
    with sqlite3.connect(catalogue_db) as src, sqlite3.connect(db) as dst:
        src.backup(dst)  # one self-contained file (no -wal beside it)
    src.close()
    dst.close()
    files = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    rows = table_rows(db)

    argv = [a.replace("{dir}", str(tmp_path)) for a in argv]
    own_db = "--db" in argv
    extra = [] if own_db else ["--db", str(db)]
    if argv[0] == "pretrain" and "--dataset" not in argv:
        extra += ["--dataset", "synthetic"]
    assert main([*argv, *extra]) == 2
    captured = capfd.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    assert needle.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert table_rows(db) == rows
    assert {p: p.read_bytes() for p in files} == files  # the DB, and every other file
    assert not (tmp_path / "runs").exists()
    shutil.rmtree(tmp_path / "no", ignore_errors=True)
