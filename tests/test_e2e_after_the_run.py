"""After a run on the real Fashion-MNIST, through the CLI (slow): the encoder exported and loaded
in a fresh process, the results as DataFrames, the curves in TensorBoard, a transfer evaluation,
and the disk reclaimed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sslbench
from sslbench import results
from sslbench.cli import main
from sslbench.data import load_dataset
from sslbench.store import Store

pytestmark = pytest.mark.slow

_LOAD = """
import sys, warnings
import torch
warnings.simplefilter("ignore", FutureWarning)
import sslbench
images = torch.load(sys.argv[1])
with torch.no_grad():
    torch.save({name: sslbench.load_encoder(path)(images) for name, path in
                zip(("safetensors", "torchscript"), sys.argv[2:4])}, sys.argv[4])
"""


def test_after_a_fashion_mnist_run(tmp_path: Path, fmnist_dir: Path, repo: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    db = str(tmp_path / "r.sqlite")
    common = ["--data-dir", str(fmnist_dir), "--db", db]
    assert main(["pretrain", "simclr", "--epochs", "1", "--eval", "knn", "--quiet",
                 "--tensorboard", str(tmp_path / "tb"), f"train.output_dir={tmp_path / 'runs'}",
                 "eval.knn.monitor_train_size=2000", *common]) == 0

    # the encoder: exported, loaded by a new process, the same features on real test images
    files = [tmp_path / "e.safetensors", tmp_path / "e.pt"]
    for fmt, path in zip(("safetensors", "torchscript"), files, strict=True):
        assert main(["export", "1", "--format", fmt, "--out", str(path), "--db", db]) == 0
    images = load_dataset("fashion-mnist", fmnist_dir, download=False).test_images[:64]
    torch.save(images, tmp_path / "images.pt")
    subprocess.run([sys.executable, "-c", _LOAD, str(tmp_path / "images.pt"), *map(str, files),
                    str(tmp_path / "out.pt")], cwd=repo, check=True, timeout=300)
    with torch.no_grad():
        expected = sslbench.load_encoder(1, db=db)(images)
    for name, features in torch.load(tmp_path / "out.pt").items():
        assert torch.equal(features, expected), name

    # the results, as the CLI shows them
    with results.open_store(db) as store:
        frame = results.runs_frame(store)
        board = results.leaderboard_frame(store)
    assert frame.loc[1, "dataset"] == "fashion-mnist" and frame.loc[1, "disk_bytes"] > 0
    assert board.loc[0, "knn_mean"] == pytest.approx(frame.loc[2, "summary.knn_top1"])
    assert isinstance(frame, pd.DataFrame)

    # the curves: live, then exported after the fact, read by TensorBoard
    assert main(["runs", "export-tensorboard", "1", "--out", str(tmp_path / "tb2"),
                 "--db", db]) == 0
    for root in ("tb", "tb2"):
        reader = EventAccumulator(str(tmp_path / root / "run1-simclr-fashion-mnist"))
        reader.Reload()
        assert {"train/loss", "train/lr", "knn/val_top1", "diagnostics/rankme_backbone",
                "eval/knn_top1"} <= set(reader.Tags()["scalars"])

    # transfer: the Fashion-MNIST encoder probed on another dataset, both recorded
    assert main(["knn", "1", "--eval-dataset", "synthetic", *common]) == 0
    with Store.open(db) as store:
        transfer = store.children(1)[-1]
    assert transfer.dataset == "synthetic"
    assert transfer.config["transfer"]["pretrain_dataset"] == "fashion-mnist"

    # the disk: a dry run changes nothing, then the run and its evaluations go with their files
    capsys.readouterr()
    with Store.open(db) as store:
        folder = Path(store.get_run(1).run_dir or "")
    assert folder.parent == tmp_path / "runs" and folder.is_dir()  # runs/<its uid>
    assert main(["runs", "delete", "1", "--dry-run", "--db", db]) == 0
    assert "would free" in capsys.readouterr().out and folder.is_dir()
    assert main(["runs", "delete", "1", "--db", db]) == 0
    with Store.open(db) as store:
        assert store.list_runs() == []
    assert not folder.exists()
