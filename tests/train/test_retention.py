"""``train.keep_checkpoints``: last, all, best and none-after-eval, from the keeper's file moves to
real runs."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from sslbench.cli import main
from sslbench.store import Store
from sslbench.train.retention import CheckpointKeeper


def _epochs(folder: Path, keeper: CheckpointKeeper, losses: list[float], start: int = 1) -> Path:
    """Write checkpoint.pt as the loop does (atomically, a new file per epoch), then call the
    keeper; the checkpoint's path."""
    checkpoint = folder / "checkpoint.pt"
    for epoch, loss in enumerate(losses, start=start):
        tmp = folder / "checkpoint.pt.tmp"
        tmp.write_text(f"epoch {epoch}")
        os.replace(tmp, checkpoint)
        keeper(epoch, checkpoint, loss)
    return checkpoint


def test_last_keeps_the_last_checkpoint_only(tmp_path: Path) -> None:
    keeper = CheckpointKeeper("last")
    checkpoint = _epochs(tmp_path, keeper, [3.0, 2.0, 2.5])
    assert keeper.finish(checkpoint) == {"checkpoint": checkpoint}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_all_keeps_every_epoch_without_copying(tmp_path: Path) -> None:
    keeper = CheckpointKeeper("all")
    checkpoint = _epochs(tmp_path, keeper, [3.0, 2.0, 2.5])
    kept = keeper.finish(checkpoint)
    assert list(kept) == ["checkpoint", "checkpoint-epoch-1", "checkpoint-epoch-2",
                          "checkpoint-epoch-3"]
    assert [kept[f"checkpoint-epoch-{e}"].read_text() for e in (1, 2, 3)] == \
        ["epoch 1", "epoch 2", "epoch 3"]
    assert kept["checkpoint-epoch-3"].samefile(checkpoint)  # a link, not a copy


def test_best_keeps_the_lowest_loss_and_survives_a_resume(tmp_path: Path) -> None:
    keeper = CheckpointKeeper("best")
    _epochs(tmp_path, keeper, [3.0, 2.0])
    # the process dies; a resumed run's keeper learns the losses of the epochs done
    resumed = CheckpointKeeper("best", [(1, 3.0), (2, 2.0)])
    checkpoint = _epochs(tmp_path, resumed, [2.5, math.nan], start=3)
    assert resumed.best_epoch == 2
    assert resumed.finish(checkpoint) == {"checkpoint": checkpoint}
    assert checkpoint.read_text() == "epoch 2"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_best_when_the_last_epoch_is_the_best(tmp_path: Path) -> None:
    keeper = CheckpointKeeper("best")
    checkpoint = _epochs(tmp_path, keeper, [3.0, 2.0])
    keeper.finish(checkpoint)
    assert checkpoint.read_text() == "epoch 2"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def _tiny_run(folder: Path, keep: str, epochs: int = 1) -> str:
    folder.mkdir(exist_ok=True)
    db = str(folder / "r.sqlite")
    assert main(["pretrain", "simclr", "--dataset", "synthetic", "--epochs", str(epochs),
                 "--quiet", "--eval", "knn", "--db", db, f"train.output_dir={folder / 'runs'}",
                 "train.batch_size=512", "eval.knn.monitor_every=0",
                 "eval.diagnostics.enabled=false", f"train.keep_checkpoints={keep}"]) == 0
    return db


def test_none_after_eval_removes_the_checkpoint_once_evaluated(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = _tiny_run(tmp_path, "none-after-eval")
    assert "removed its checkpoint" in capsys.readouterr().out
    with Store.open(db) as store:
        run, (knn,) = store.get_run(1), store.children(1)
    assert run.status == "COMPLETED" and run.artifacts == [] and run.run_dir is None
    assert knn.status == "COMPLETED" and knn.summary["knn_top1"] > 0.1
    assert not (tmp_path / "runs" / "1").exists()
    assert main(["export", "1", "--db", db, "--out", str(tmp_path / "e.safetensors")]) == 2
    assert "no final checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_all_and_best_on_real_runs(tmp_path: Path) -> None:
    """``all`` records a checkpoint per epoch; ``best`` records the best epoch's, and its
    evaluation evaluates those weights (the kNN of the kept checkpoint equals the recorded one)."""
    db = _tiny_run(tmp_path / "all", "all", epochs=3)
    with Store.open(db) as store:
        names = [a.name for a in store.get_run(1).artifacts]
    assert names == ["checkpoint", "checkpoint-epoch-1", "checkpoint-epoch-2",
                     "checkpoint-epoch-3"]
    db = _tiny_run(tmp_path / "best", "best", epochs=3)
    with Store.open(db) as store:
        run = store.get_run(1)
        losses = {m.epoch: m.value for m in run.metrics if m.key == "loss"}
        first_knn = store.children(1)[0].summary["knn_top1"]
    assert run.summary["checkpoint_epoch"] == min(losses, key=losses.__getitem__)
    assert [a.name for a in run.artifacts] == ["checkpoint"]
    assert main(["knn", "1", "--db", db]) == 0  # re-evaluates the kept checkpoint
    with Store.open(db) as store:
        assert store.children(1)[-1].summary["knn_top1"] == first_knn
