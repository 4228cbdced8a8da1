from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sslbench.data.registry import DATASETS, get_info
from sslbench.errors import UserError


def test_registered_datasets() -> None:
    assert {"fashion-mnist", "mnist", "synthetic"} <= set(DATASETS)
    fmnist = get_info("fashion-mnist")
    assert (fmnist.num_classes, fmnist.shape) == (10, (1, 28, 28))
    assert fmnist.mean == pytest.approx((0.2860,), abs=1e-3)
    assert fmnist.std == pytest.approx((0.3530,), abs=1e-3)
    assert get_info("mnist").mean == pytest.approx((0.1307,))
    assert len(fmnist.files) == 4 and fmnist.downloadable
    assert get_info("synthetic").files == () and not get_info("synthetic").downloadable


def test_unknown_dataset_lists_choices() -> None:
    with pytest.raises(UserError) as info:
        get_info("cifar-11")
    assert str(info.value) == (
        "unknown dataset 'cifar-11': choose one of fashion-mnist, mnist, cifar10, cifar100, "
        "stl10, imagefolder, synthetic"
    )


@pytest.mark.multiprocess
def test_metadata_modules_do_not_import_torch(repo: Path) -> None:
    code = (
        "import sys, sslbench.data, sslbench.data.registry, sslbench.data.discovery, "
        "sslbench.cli.datasets; print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=repo,
        env={"PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "False"
