"""`knn`, `semi-supervised`, `supervised`, `linear-eval --layer` and `pretrain --eval ...` end to
end on synthetic data; diagnostics and collapse flags; bad input writes nothing."""

from __future__ import annotations

import math
import shutil
import sqlite3
from pathlib import Path

import pytest

from sslbench.cli import main
from sslbench.store import Store

DIAGNOSTICS = ("collapse_std_backbone", "collapse_std_projector", "rankme_backbone",
               "rankme_projector", "alignment", "uniformity", "infonce_mi", "infonce_log_k",
               "val_knn_top1", "collapsed")



@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database holding one finished 1-epoch SimCLR run (id 1) and its checkpoint."""
    folder = tmp_path_factory.mktemp("pretrained")
    db = folder / "r.sqlite"
    assert main(["pretrain", "simclr", "--dataset", "synthetic", "--db", str(db), "--quiet",
                 "--epochs", "1", "--eval", "none", f"train.output_dir={folder / 'runs'}"]) == 0
    return db


@pytest.fixture
def db(workdir: Path, pretrained: Path) -> str:
    copy = workdir / "r.sqlite"
    shutil.copy(pretrained, copy)
    return str(copy)


def test_pretrain_records_diagnostics_per_epoch(pretrained: Path) -> None:
    with Store.open(str(pretrained), create=False) as store:
        run = store.get_run(1)
    by_key = {m.key: m for m in run.metrics}
    for key in DIAGNOSTICS:
        assert key in by_key and by_key[key].epoch == 1, key
    assert by_key["infonce_mi"].value <= by_key["infonce_log_k"].value
    # the held-out batch: the validation split, 10 % of every class of 1024 images
    assert by_key["infonce_log_k"].value == pytest.approx(math.log(100))
    assert by_key["collapsed"].value == 0.0 and "collapsed" not in run.summary
    assert 1.0 <= by_key["rankme_backbone"].value <= 64  # ConvNet width 16 → 64 features
    assert 0.1 < by_key["val_knn_top1"].value <= 1.0


def test_knn_command(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["knn", "1", "--db", db, "--k", "20", "--temperature", "0.07"]) == 0
    assert "run 2: kNN (k=20, T=0.07) of run 1 (backbone)" in capsys.readouterr().out
    assert main(["knn", "1", "--db", db, "--layer", "stage2"]) == 0
    with Store.open(db, create=False) as store:
        first, second = store.get_run(2), store.get_run(3)
    assert (first.kind, first.parent_id, first.status) == ("knn", 1, "COMPLETED")
    assert first.config["knn"]["k"] == 20 and first.config["layer"] == "backbone"
    assert second.config["layer"] == "stage2" and second.config["knn"]["k"] == 200
    assert 0.3 < first.summary["knn_top1"] <= first.summary["knn_top5"] <= 1.0


def test_semi_supervised_and_supervised_share_the_subset(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["semi-supervised", "1", "--labels", "10%", "--db", db, "--steps", "15"]) == 0
    assert main(["supervised", "--labels", "10%", "--dataset", "synthetic", "--db", db,
                 "--steps", "15"]) == 0
    out = capsys.readouterr().out
    assert "run 2: semi-supervised 10% (100 labels" in out
    assert "run 3: supervised from scratch on 10% of synthetic (100 labels" in out
    with Store.open(db, create=False) as store:
        semi, sup = store.get_run(2), store.get_run(3)
    assert (semi.kind, semi.parent_id, semi.status) == ("semisup", 1, "COMPLETED")
    assert (sup.kind, sup.parent_id, sup.status) == ("supervised", None, "COMPLETED")
    assert semi.config["subset_id"] == sup.config["subset_id"]
    for run in (semi, sup):  # both report on the test split, fit on the whole train split
        assert (run.config["split"], run.config["fit"]) == ("test", "train")
    assert semi.config["semi"]["steps"] == sup.config["semi"]["steps"] == 15
    assert sup.config["model"]["width"] == 16  # the synthetic dataset's defaults
    for key in ("semi_finetune_top1", "semi_linear_top1", "num_labels"):
        assert key in semi.summary
    assert semi.summary["num_labels"] == sup.summary["num_labels"] == 100
    assert 0.0 <= sup.summary["supervised_top1"] <= 1.0


def test_linear_eval_options(db: str) -> None:
    argv = ["linear-eval", "1", "--db", db, "--epochs", "3", "--layer", "projector",
            "--batchnorm", "--augment"]
    assert main(argv) == 0
    with Store.open(db, create=False) as store:
        run = store.get_run(2)
    assert run.config["layer"] == "projector"
    assert run.config["linear"]["batchnorm"] is True and run.config["linear"]["augment"] is True
    assert {"linear_top1", "linear_top5"} <= set(run.summary)


def test_pretrain_eval_list_makes_one_child_per_protocol(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(workdir / "r.sqlite")
    argv = ["pretrain", "simclr", "--dataset", "synthetic", "--db", db, "--quiet", "--epochs", "1",
            "--eval", "linear,knn,semi:1,semi:10/class", "eval.semi.steps=10",
            "eval.knn.monitor_every=0"]
    assert main(argv) == 0
    with Store.open(db, create=False) as store:
        children = store.children(1)
        pre = store.get_run(1)
    assert [c.kind for c in children] == ["linear", "knn", "semisup", "semisup"]
    assert all(c.status == "COMPLETED" and c.parent_id == 1 for c in children)
    assert [c.config["labels"] for c in children[2:]] == ["1%", "10/class"]
    # 1 % of 1024 images in 10 classes → 1 image per class
    assert [c.config["per_class"] for c in children[2:]] == [1, 10]
    assert [c.summary["num_labels"] for c in children[2:]] == [10, 100]
    assert not any(m.key == "val_knn_top1" for m in pre.metrics)  # monitor switched off


def test_collapse_is_flagged_and_warned_but_not_stopped(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a ratio of 100 puts the threshold (100/√d) above any possible std: every epoch "collapses"
    db = str(workdir / "r.sqlite")
    argv = ["pretrain", "simclr", "--dataset", "synthetic", "--db", db, "--quiet",
            "--eval", "none", "eval.diagnostics.collapse_ratio=100"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("warning: representation collapse") == 1  # warned once, at epoch 1
    with Store.open(db, create=False) as store:
        run = store.get_run(1)
    assert run.status == "COMPLETED"
    assert run.summary["collapsed"] == 1.0 and run.summary["collapse_epoch"] == 1.0
    assert [m.value for m in run.metrics if m.key == "collapsed"] == [1.0, 1.0]


def test_stop_on_collapse_fails_the_run_with_the_reason(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(workdir / "r.sqlite")
    argv = ["pretrain", "simclr", "--dataset", "synthetic", "--db", db, "--quiet",
            "--stop-on-collapse", "eval.diagnostics.collapse_ratio=100"]
    assert main(argv) == 1
    assert "representation collapse at epoch 1" in capsys.readouterr().err
    with Store.open(db, create=False) as store:
        (run,) = store.list_runs()
        run = store.get_run(run.id)
    assert run.status == "FAILED"
    assert run.failure_reason is not None and "collapse" in run.failure_reason
    assert "--stop-on-collapse" in run.failure_reason
    assert sorted({m.epoch for m in run.metrics}) == [1]  # stopped after the first epoch


def _table_counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as con:
        names = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        return {n: con.execute(f"select count(*) from {n}").fetchone()[0] for n in names}


BAD_INPUT = [
    (["semi-supervised", "1", "--labels", "0%"], "out of range"),
    (["semi-supervised", "1", "--labels", "150%"], "out of range"),
    (["semi-supervised", "1", "--labels", "lots"], "--labels"),
    (["semi-supervised", "1", "--labels", "200/class"], "smallest class"),
    (["semi-supervised", "1", "--labels", "1%", "--steps", "0"], "eval.semi.steps"),
    (["supervised", "--labels", "0%", "--dataset", "synthetic"], "out of range"),
    (["supervised", "--labels", "1%", "--dataset", "nosuch"], "nosuch"),
    (["knn", "1", "--layer", "head"], "unknown layer"),
    (["knn", "1", "--layer", "stage9"], "stage9"),
    (["knn", "1", "--k", "0"], "eval.knn.k"),
    (["knn", "99"], "99"),
    (["linear-eval", "1", "--layer", "stage7"], "stage7"),
    (["pretrain", "simclr", "--dataset", "synthetic", "--eval", "linear,probe"], "probe"),
    (["pretrain", "simclr", "--dataset", "synthetic", "--eval", "semi:0"], "out of range"),
    (["pretrain", "simclr", "--dataset", "synthetic", "--eval", "semi:150"], "out of range"),
    (["pretrain", "simclr", "--dataset", "synthetic", "--eval", "semi:500/class"],
     "smallest class"),
    (["pretrain", "simclr", "--dataset", "synthetic", "eval.knn.layer=stage5"], "stage5"),
    (["pretrain", "simclr", "--dataset", "synthetic", "eval.linear.layer=fc"], "fc"),
    (["pretrain", "simclr", "--dataset", "synthetic", "eval.knn.layer=projector:grid3"], "grid"),
    (["knn", "1", "--layer", "backbone:grid0"], "unknown layer"),
]


@pytest.mark.parametrize(("argv", "needle"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    db: str, capfd: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    before, bytes_before = _table_counts(Path(db)), Path(db).read_bytes()
    runs_dir = Path("runs")
    assert main([*argv, "--db", db]) == 2
    captured = capfd.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and needle.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert _table_counts(Path(db)) == before and Path(db).read_bytes() == bytes_before
    assert not runs_dir.exists()


def test_bad_labels_do_not_create_a_database(workdir: Path) -> None:
    fresh = workdir / "fresh.sqlite"
    assert main(["supervised", "--labels", "150%", "--dataset", "synthetic",
                 "--db", str(fresh)]) == 2
    assert main(["semi-supervised", "1", "--labels", "1%", "--db", str(fresh)]) == 2
    assert not fresh.exists()


@pytest.mark.multiprocess
@pytest.mark.parametrize("command", ["knn", "semi-supervised", "supervised", "linear-eval"])
def test_help_of_the_evaluation_commands_does_not_import_torch(command: str, repo: Path) -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom sslbench.cli import main\n"
            f"assert main([{command!r}, '--help']) == 0\n"
            "print('TORCH', 'torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "TORCH False" in proc.stdout and "Usage" in proc.stdout
