from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from sslbench.data import load_dataset
from sslbench.data.idx import read_idx


def test_round_trip_gz_and_plain(tmp_path: Path, write_idx_file) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for gz in (True, False):
        path = write_idx_file(tmp_path / f"x{gz}.gz", array, gz=gz)
        read = read_idx(path)
        assert read.dtype == np.uint8 and read.flags.writeable
        np.testing.assert_array_equal(read, array)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: gzip.compress(data)[:-20],  # truncated gzip stream
        lambda data: gzip.compress(data[:-5]),  # fewer pixels than the header says
        lambda data: gzip.compress(b"\x01" + data[1:]),  # bad magic
        lambda data: b"\x1f\x8bnot really gzip",
    ],
)
def test_corrupt_file_is_user_error_naming_it(tmp_path: Path, make_idx_dataset, damage) -> None:
    from sslbench.errors import UserError

    folder = make_idx_dataset(tmp_path / "mnist")
    victim = folder / "train-images-idx3-ubyte.gz"
    victim.write_bytes(damage(gzip.decompress(victim.read_bytes())))
    with pytest.raises(UserError) as info:
        load_dataset("mnist", tmp_path, download=False)
    assert str(victim) in str(info.value) and "\n" not in str(info.value)


def test_real_fashion_mnist(fmnist_dir: Path) -> None:
    data = load_dataset("fashion-mnist", fmnist_dir, download=False)
    assert data.source == str(fmnist_dir / "fashion-mnist")
    assert data.train_images.shape == (60000, 1, 28, 28)
    assert data.test_images.shape == (10000, 1, 28, 28)
    for images in (data.train_images, data.test_images):
        assert images.dtype == torch.uint8 and images.is_contiguous()
    for labels, per_class in ((data.train_labels, 6000), (data.test_labels, 1000)):
        assert labels.dtype == torch.int64
        assert labels.bincount().tolist() == [per_class] * 10
    pixels = data.train_images.float() / 255
    assert pixels.mean().item() == pytest.approx(data.info.mean[0], abs=1e-3)
    assert pixels.std().item() == pytest.approx(data.info.std[0], abs=1e-3)
