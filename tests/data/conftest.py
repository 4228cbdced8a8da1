"""Fixtures for the data tests: a sealed-off search path and tiny fabricated IDX datasets."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sslbench.data import discovery
from sslbench.data.registry import IDX_FILES


def write_idx(path: Path, array: np.ndarray, *, gz: bool = True) -> Path:
    """Write a uint8 array as an IDX file (gzip-compressed when `gz`); returns the path written."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path.write_bytes(gzip.compress(data))
        return path
    path = path.with_suffix("")
    path.write_bytes(data)
    return path


def write_idx_dataset(folder: Path, *, fill: int = 7, gz: bool = True) -> Path:
    """A 6-train / 4-test MNIST-like dataset in `folder`, every pixel equal to `fill`."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"train": 6, "t10k": 4}
    for name in IDX_FILES:
        num = sizes[name.split("-")[0]]
        if "images" in name:
            array = np.full((num, 28, 28), fill, dtype=np.uint8)
        else:
            array = np.arange(num, dtype=np.uint8) % 10
        write_idx(folder / name, array, gz=gz)
    return folder


@pytest.fixture(autouse=True)
def isolated_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No env var, an empty user cache and an empty Debian root: this machine's data is unseen."""
    monkeypatch.delenv(discovery.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(discovery, "DEBIAN_ROOT", tmp_path / "debian" / "datasets")
    return tmp_path


@pytest.fixture
def make_idx_dataset() -> Callable[..., Path]:
    return write_idx_dataset


@pytest.fixture
def write_idx_file() -> Callable[..., Path]:
    return write_idx
