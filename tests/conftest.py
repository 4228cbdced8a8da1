"""Fixtures shared by the whole test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATASETS = Path(__file__).parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def fmnist_dir() -> Path:
    """The root holding `fashion-mnist/*.gz` (pass it as `data_dir`); skips the test if absent."""
    if not (SHARED_DATASETS / "fashion-mnist" / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real Fashion-MNIST not available: no {SHARED_DATASETS}/fashion-mnist/*.gz")
    return SHARED_DATASETS
