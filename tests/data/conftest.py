"""Fixtures for the data tests: a sealed-off search path and tiny fabricated datasets written in
each native on-disk format (IDX, CIFAR pickles, STL-10 binary, image folders)."""

from __future__ import annotations

import gzip
import pickle
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


CIFAR10_BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")


def write_cifar(folder: Path, name: str = "cifar10", *, per_batch: int = 4) -> Path:
    """A CIFAR python-version copy in `folder` (`cifar-10-batches-py/` or `cifar-100-python/`):
    pickled dicts as the real files (protocol 2, bytes keys); pixel value = image index * 3 +
    channel, label = index % classes. Returns `folder`."""
    if name == "cifar10":
        sub, names, key, classes = "cifar-10-batches-py", CIFAR10_BATCHES, b"labels", 10
    else:
        sub, names, key, classes = "cifar-100-python", ("train", "test"), b"fine_labels", 100
    (folder / sub).mkdir(parents=True, exist_ok=True)
    start = 0
    for batch_name in names:
        index = np.arange(start, start + per_batch)
        data = (index[:, None, None] * 3 + np.arange(3)[None, :, None]) % 256
        data = np.broadcast_to(data, (per_batch, 3, 1024)).reshape(per_batch, 3072)
        batch = {
            b"batch_label": batch_name.encode(),
            b"data": data.astype(np.uint8),
            key: [int(i) % classes for i in index],
        }
        with (folder / sub / batch_name).open("wb") as f:
            pickle.dump(batch, f, protocol=2)
        start += per_batch
    return folder


def stl10_image_bytes(images: np.ndarray) -> bytes:
    """uint8 [N, 3, 96, 96] images in STL-10's on-disk layout (each plane column by column)."""
    return np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes()


def write_stl10(folder: Path, *, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """A tiny `stl10_binary/` in `folder` with random images; returns the arrays written
    (`train_X`, `train_y` (1..10), `test_X`, `test_y`, `unlabeled_X`)."""
    sizes = sizes or {"train": 3, "test": 2, "unlabeled": 5}
    rng = np.random.default_rng(0)
    binary = folder / "stl10_binary"
    binary.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for split, num in sizes.items():
        images = rng.integers(0, 256, (num, 3, 96, 96), dtype=np.uint8)
        arrays[f"{split}_X"] = images
        (binary / f"{split}_X.bin").write_bytes(stl10_image_bytes(images))
        if split != "unlabeled":
            labels = (np.arange(num) % 10 + 1).astype(np.uint8)
            arrays[f"{split}_y"] = labels
            (binary / f"{split}_y.bin").write_bytes(labels.tobytes())
    return arrays


def write_image_folder(
    root: Path,
    classes: dict[str, tuple[int, int, int]],
    *,
    per_class: int = 2,
    size: tuple[int, int] = (40, 30),
) -> Path:
    """`root/{train,val}/<class>/*.png|jpg`: solid images of each class's RGB colour."""
    from PIL import Image

    for split in ("train", "val"):
        for name, colour in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                suffix = ".png" if i % 2 == 0 else ".JPG"
                Image.new("RGB", size, colour).save(folder / f"img{i}{suffix}")
    return root


@pytest.fixture
def make_cifar() -> Callable[..., Path]:
    return write_cifar


@pytest.fixture
def make_stl10() -> Callable[..., dict[str, np.ndarray]]:
    return write_stl10


@pytest.fixture
def make_image_folder() -> Callable[..., Path]:
    return write_image_folder
