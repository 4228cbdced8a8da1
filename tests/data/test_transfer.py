"""Transfer evaluation (``--eval-dataset``): a dataset adapted to the input of an encoder pretrained
on another one, and evaluations that record both datasets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from sslbench.cli import main
from sslbench.config import DataConfig
from sslbench.data import load_dataset
from sslbench.data.transfer import adapt_dataset, encoder_input
from sslbench.store import Store


def test_gray_images_for_an_rgb_encoder_are_repeated_and_resized() -> None:
    synthetic = load_dataset("synthetic", seed=0)
    adapted, notes = adapt_dataset(synthetic, encoder_input(DataConfig(dataset="cifar10")))
    assert adapted.train_images.shape == (1024, 3, 32, 32) and adapted.test_images.dtype == \
        torch.uint8
    assert torch.equal(adapted.train_images[:, 0], adapted.train_images[:, 2])
    assert adapted.info.mean == encoder_input(DataConfig(dataset="cifar10")).mean
    assert torch.equal(adapted.train_labels, synthetic.train_labels)
    assert adapted.info.name == "synthetic" and adapted.info.num_classes == 10
    assert notes == {"pretrain_dataset": "cifar10", "eval_dataset": "synthetic",
                     "channels": "1 → 3 (the gray channel repeated)",
                     "image_size": "28 → 32 px (bilinear, antialiased)",
                     "normalisation": "cifar10's mean and std (the encoder's input statistics)"}


def test_rgb_images_for_a_gray_encoder_take_the_luma(
        tmp_path: Path, make_cifar: Callable[..., Path]) -> None:
    cifar = load_dataset("cifar10", make_cifar(tmp_path / "cifar10"), download=False)
    adapted, notes = adapt_dataset(cifar, encoder_input(DataConfig(dataset="fashion-mnist")))
    assert adapted.train_images.shape == (20, 1, 28, 28)
    assert notes["channels"] == "3 → 1 (gray: ITU-R 601 luma)"
    # image i is flat, channel c = 3i + c: resizing keeps it flat, the luma weighs the channels
    for i in (0, 7):
        luma = round(0.299 * 3 * i + 0.587 * (3 * i + 1) + 0.114 * (3 * i + 2))
        assert adapted.train_images[i].unique().tolist() == [luma]


def test_the_unlabeled_split_is_dropped(tmp_path: Path,
                                        make_stl10: Callable[..., dict]) -> None:
    make_stl10(tmp_path / "stl10")
    stl = load_dataset("stl10", tmp_path, download=False)
    adapted, notes = adapt_dataset(stl, encoder_input(DataConfig(dataset="synthetic")))
    assert adapted.unlabeled_images is None and adapted.test_images.shape == (2, 1, 28, 28)
    assert notes["image_size"] == "96 → 28 px (bilinear, antialiased)"


def test_a_probe_on_another_dataset_records_both(
        tmp_path: Path, make_cifar: Callable[..., Path], trained_run: Callable[..., int],
        capsys: pytest.CaptureFixture[str]) -> None:
    """An encoder pretrained on (gray, 28 px) `synthetic` probed by kNN and a linear classifier
    on (RGB, 32 px) CIFAR-10 files; the rows say which dataset is which, the leaderboard gives
    the transfer its own columns."""
    make_cifar(tmp_path / "data")
    db = str(tmp_path / "r.sqlite")
    run_id = trained_run(db, tmp_path / "runs")
    data = ["--data-dir", str(tmp_path / "data"), "--db", db]
    assert main(["knn", str(run_id), "--k", "5", "--eval-dataset", "cifar10", *data]) == 0
    assert main(["linear-eval", str(run_id), "--epochs", "2", "--eval-dataset", "cifar10",
                 *data]) == 0
    out = capsys.readouterr().out
    assert "evaluating its synthetic encoder on cifar10: channels 3 → 1" in out
    with Store.open(db) as store:
        parent, (knn, linear) = store.get_run(run_id), store.children(run_id)
    assert parent.dataset == "synthetic"
    for child in (knn, linear):
        assert child.status == "COMPLETED" and child.dataset == "cifar10"
        assert child.config["data"]["dataset"] == "cifar10"
        assert child.config["transfer"]["pretrain_dataset"] == "synthetic"
        assert child.config["transfer"]["image_size"] == "32 → 28 px (bilinear, antialiased)"
    assert 0.0 <= knn.summary["knn_top1"] <= 1.0 and "linear_top1" in linear.summary
    assert main(["report", "--db", db, "--format", "csv"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "knn@cifar10_mean" in header and "linear@cifar10_mean" in header
    assert "knn_mean" not in header  # the transfer is not the in-domain score


def test_an_rgb_encoder_probed_on_gray_data(tmp_path: Path,
                                            trained_run: Callable[..., int]) -> None:
    db = str(tmp_path / "r.sqlite")
    run_id = trained_run(db, tmp_path / "runs", dataset="cifar10",
                         **{"model.backbone": "convnet", "model.width": 8})
    assert main(["semi-supervised", str(run_id), "--labels", "5/class", "--steps", "2",
                 "--eval-dataset", "synthetic", "--db", db]) == 0
    with Store.open(db) as store:
        (semi,) = store.children(run_id)
    assert semi.dataset == "synthetic" and semi.config["transfer"]["channels"] == \
        "1 → 3 (the gray channel repeated)"
    assert semi.summary["num_labels"] == 50


def test_an_unknown_eval_dataset_is_bad_input(tmp_path: Path, trained_run: Callable[..., int],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "r.sqlite")
    run_id = trained_run(db, tmp_path / "runs")
    assert main(["knn", str(run_id), "--eval-dataset", "imagenet", "--db", db]) == 2
    assert "unknown dataset 'imagenet'" in capsys.readouterr().err
    with Store.open(db) as store:
        assert store.children(run_id) == []
