"""Datasets as in-memory uint8 tensors: registry, offline discovery, loading, augmentation.

Importing this package does not import torch (the registry and discovery are metadata only);
`load_dataset` and `sslbench.data.augment` do.

    data = load_dataset("fashion-mnist", data_dir="datasets").to("cuda")
    augment = BatchAugment(cfg.augment, mean=data.info.mean, std=data.info.std, out_size=28)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sslbench.data.discovery import Located, dataset_files, locate, require
from sslbench.data.registry import DATASETS, DatasetInfo, get_info
from sslbench.errors import UserError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "ImageDataset",
    "Located",
    "get_info",
    "load_dataset",
    "locate",
]


@dataclass
class ImageDataset:
    """A dataset held in memory: uint8 images [N, C, H, W] (contiguous) and int64 labels [N]."""

    info: DatasetInfo
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str  # the folder read from, or "synthetic(seed=...)"

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ImageDataset:
        """The same dataset with every tensor on `device`."""
        return replace(
            self,
            train_images=self.train_images.to(device, non_blocking=non_blocking),
            train_labels=self.train_labels.to(device, non_blocking=non_blocking),
            test_images=self.test_images.to(device, non_blocking=non_blocking),
            test_labels=self.test_labels.to(device, non_blocking=non_blocking),
        )


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    seed: int = 0,
) -> ImageDataset:
    """Load dataset `name` into memory (CPU): found on disk, downloaded, or generated (`seed`).

    See `sslbench.data.discovery` for where it looks; a missing or corrupt dataset is a
    one-line UserError.
    """
    info = get_info(name)
    if name == "synthetic":
        from sslbench.data.synthetic import make_synthetic

        return ImageDataset(info, *make_synthetic(seed), source=f"synthetic(seed={seed})")

    from sslbench.data.idx import read_split

    folder = require(name, data_dir, download=download)
    files = dataset_files(folder, info)
    if files is None:  # deleted since `require` found them
        raise UserError(f"dataset {name!r}: files vanished from {folder}")
    train_images, train_labels = read_split(
        files["train-images-idx3-ubyte.gz"], files["train-labels-idx1-ubyte.gz"], info
    )
    test_images, test_labels = read_split(
        files["t10k-images-idx3-ubyte.gz"], files["t10k-labels-idx1-ubyte.gz"], info
    )
    return ImageDataset(
        info, train_images, train_labels, test_images, test_labels, source=str(folder)
    )
