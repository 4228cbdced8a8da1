"""Every protocol on the real Fashion-MNIST through the CLI, kept to a few CPU minutes (slow).

A 1-epoch SimCLR pretraining, then linear, kNN, semi-supervised 1 % and 10 % as child runs, and
the supervised-from-scratch baseline on the same 1 % subset. Settings are shortened (fewer linear
epochs and fine-tuning steps) so the whole test takes ≈ 3–4 minutes on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sslbench.cli import main
from sslbench.store import Store

pytestmark = pytest.mark.slow

RANDOM_INIT_CONVNET = 0.814  # DESIGN.md: linear probe on a randomly initialised ConvNet


def test_all_protocols_on_fashion_mnist(tmp_path: Path, fmnist_dir: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    common = ["--data-dir", str(fmnist_dir), "--db", db]
    argv = ["pretrain", "simclr", *common, "--quiet", "--epochs", "1",
            "--eval", "linear,knn,semi:1,semi:10", f"train.output_dir={tmp_path / 'runs'}",
            "eval.linear.epochs=20", "eval.semi.steps=150", "eval.knn.monitor_train_size=5000"]
    assert main(argv) == 0
    assert main(["supervised", "--labels", "1%", *common, "--steps", "150"]) == 0

    with Store.open(db, create=False) as store:
        pre = store.get_run(1)
        linear, knn, semi1, semi10 = store.children(1)
        (sup,) = store.list_runs(kind="supervised")
    assert [r.status for r in (pre, linear, knn, semi1, semi10, sup)] == ["COMPLETED"] * 6
    assert [semi1.summary["num_labels"], semi10.summary["num_labels"]] == [600, 6000]
    assert semi1.config["subset_id"] == sup.config["subset_id"]
    # reported on test, each classifier fit on the whole train split (train + val)
    for child in (linear, knn, semi1, semi10):
        assert (child.config["split"], child.config["fit"]) == ("test", "train")
        assert child.config["val_split"].startswith("fashion-mnist-v0-6000-")

    metrics = {m.key: m.value for m in pre.metrics}
    assert metrics["collapsed"] == 0.0 and metrics["infonce_mi"] <= metrics["infonce_log_k"]
    assert metrics["val_knn_top1"] > 0.6  # online monitor: 5000 train images, the val split

    assert linear.summary["linear_top1"] > RANDOM_INIT_CONVNET
    assert knn.summary["knn_top1"] > 0.7
    assert semi1.summary["semi_finetune_top1"] > 0.65
    assert semi10.summary["semi_finetune_top1"] > semi1.summary["semi_finetune_top1"]
    assert semi10.summary["semi_linear_top1"] > semi1.summary["semi_linear_top1"]
    assert 0.5 < sup.summary["supervised_top1"] < 1.0
