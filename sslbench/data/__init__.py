"""Datasets as in-memory uint8 tensors: registry, offline discovery, loading, augmentation.

Importing this package does not import torch (the registry and discovery are metadata only);
`load_dataset` and `sslbench.data.augment` do.

    data = load_dataset("fashion-mnist", data_dir="datasets").to("cuda")
    augment = BatchAugment(cfg.augment, mean=data.info.mean, std=data.info.std, out_size=28)

Readers of the native formats: `idx` (MNIST-like), `cifar` (python pickles), `stl10` (binary),
`imagefolder` (class subfolders of image files); `synthetic` generates. A dataset prepared once
into shards (`sslbench data prepare`, `shards`, `prepare`) is read from them: into memory, or
left there and streamed (`stream`) when it does not fit (`data.storage`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from sslbench.data.discovery import Located, dataset_files, locate, require
from sslbench.data.registry import DATASETS, DatasetInfo, get_info
from sslbench.errors import UserError

if TYPE_CHECKING:
    import torch

    from sslbench.config import DataConfig
    from sslbench.data.shards import Manifest, Prepared

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "ImageDataset",
    "Located",
    "get_info",
    "load_dataset",
    "load_run_dataset",
    "locate",
]


@dataclass
class ImageDataset:
    """A dataset held in memory: uint8 images [N, C, H, W] (contiguous) and int64 labels [N].

    `train_*` and `test_*` are the labelled splits (evaluation trains on the first, tests on the
    second); `unlabeled_images` are extra images without labels (STL-10's 100k), and
    `pretrain_images` is what self-supervised pretraining sees.

    A streamed dataset (``data.storage=stream``) has `shards`, which pretraining streams from,
    and its image splits are :class:`~sslbench.data.shards.ShardedImages`: indexed like the
    tensors they stand for, read from the shards on demand (evaluation).
    """

    info: DatasetInfo
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str  # the folder read from, or "synthetic(seed=...)"
    unlabeled_images: torch.Tensor | None = None
    shards: Prepared | None = None

    @property
    def pretrain_images(self) -> torch.Tensor:
        """The unlabeled split where there is one (STL-10's protocol), else the train split."""
        return self.train_images if self.unlabeled_images is None else self.unlabeled_images

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ImageDataset:
        """The same dataset with every tensor on `device`."""
        unlabeled = self.unlabeled_images
        return replace(
            self,
            train_images=self.train_images.to(device, non_blocking=non_blocking),
            train_labels=self.train_labels.to(device, non_blocking=non_blocking),
            test_images=self.test_images.to(device, non_blocking=non_blocking),
            test_labels=self.test_labels.to(device, non_blocking=non_blocking),
            unlabeled_images=None
            if unlabeled is None
            else unlabeled.to(device, non_blocking=non_blocking),
        )


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    seed: int = 0,
    class_list: str | os.PathLike[str] | None = None,
    image_size: int | None = None,
) -> ImageDataset:
    """Load dataset `name` into memory (CPU): found on disk, downloaded, or generated (`seed`).

    `class_list` and `image_size` (config `data.class_list`, `data.image_size`) apply to
    `imagefolder` only. See `sslbench.data.discovery` for where it looks; a missing or corrupt
    dataset is a one-line UserError.
    """
    info = get_info(name)
    if name == "synthetic":
        from sslbench.data.synthetic import make_synthetic

        return ImageDataset(info, *make_synthetic(seed), source=f"synthetic(seed={seed})")
    if not info.configurable and (class_list is not None or image_size is not None):
        raise UserError(
            f"dataset {name!r} has fixed classes and image size; data.class_list "
            "and data.image_size apply to imagefolder only"
        )

    folder = require(name, data_dir, download=download)
    files = dataset_files(folder, info)
    if files is None:  # deleted since `require` found them
        raise UserError(f"dataset {name!r}: files vanished from {folder}")
    if name == "imagefolder":
        return _load_image_folder(info, folder, class_list, image_size or info.image_size)
    if name == "stl10":
        return _load_stl10(info, folder, files)
    if name in ("cifar10", "cifar100"):
        from sslbench.data import cifar

        label_key = "labels" if name == "cifar10" else "fine_labels"
        *train_files, test_file = info.files
        train = cifar.read_split([files[f] for f in train_files], label_key, info.num_classes)
        test = cifar.read_split([files[test_file]], label_key, info.num_classes)
        return ImageDataset(info, *train, *test, source=str(folder))

    from sslbench.data.idx import read_split

    train_images, train_labels = read_split(
        files["train-images-idx3-ubyte.gz"], files["train-labels-idx1-ubyte.gz"], info
    )
    test_images, test_labels = read_split(
        files["t10k-images-idx3-ubyte.gz"], files["t10k-labels-idx1-ubyte.gz"], info
    )
    return ImageDataset(
        info, train_images, train_labels, test_images, test_labels, source=str(folder)
    )


def load_run_dataset(data: DataConfig, seed: int, *, download: bool | None = None
                     ) -> ImageDataset:
    """The dataset a run's ``data.*`` section names, as :func:`load_dataset` loads it (``seed``
    for the generated ones), or from its prepared shards (``data.prepared``); ``download`` None
    follows ``data.download``."""
    if data.prepared is not None:
        return load_prepared(data)
    return load_dataset(data.dataset, data.data_dir,
                        download=data.download if download is None else download, seed=seed,
                        class_list=data.class_list, image_size=data.image_size)


def load_prepared(data: DataConfig) -> ImageDataset:
    """The dataset in folder ``data.prepared``, checked against its manifest and against the
    run's ``data.*`` keys, in memory or streamed as ``data.storage`` says (a one-line UserError
    for a missing or damaged shard, a manifest that does not match, or another class list)."""
    from sslbench.data import shards

    root = Path(data.prepared or "").expanduser()
    shards.webdataset()
    manifest = shards.read_manifest(root)
    if manifest.dataset != data.dataset:
        raise UserError(f"{root} holds {manifest.dataset!r}, not data.dataset={data.dataset!r}; "
                        f"set data.dataset={manifest.dataset}")
    if data.image_size is not None and data.image_size != manifest.size:
        raise UserError(f"{root} holds {manifest.size} px images, not data.image_size="
                        f"{data.image_size}; drop data.image_size or prepare the data again")
    shards.check_classes(manifest, data.class_list, root)
    shards.check_files(root, manifest, full=data.verify)
    info = replace(get_info(manifest.dataset), num_classes=len(manifest.classes),
                   channels=manifest.channels, image_size=manifest.size)
    prepared, storage = None, storage_of(data, manifest)
    if storage == "memory":
        split = {name: shards.read_split(root, manifest, name) for name in manifest.splits}
    else:  # left in the shards: pretraining streams them, evaluation reads what it needs
        prepared = shards.Prepared(root, manifest)
        split = {name: (shards.ShardedImages(root, manifest, name),  # type: ignore[misc]
                        shards.labels_of(root, manifest, name)) for name in manifest.splits}
    unlabeled = split["unlabeled"][0] if "unlabeled" in split else None
    return ImageDataset(info, *split["train"], *split["test"], source=f"{root}, {storage}",
                        unlabeled_images=unlabeled, shards=prepared)


def storage_of(data: DataConfig, manifest: Manifest) -> str:
    """``data.storage``, with auto resolved: memory when every split decoded fits
    ``data.memory_budget_gb``."""
    if data.storage != "auto":
        return data.storage
    return "memory" if manifest.decoded_bytes() <= data.memory_budget_gb * 2**30 else "stream"


def _load_stl10(info: DatasetInfo, folder: Path, files: dict[str, Path]) -> ImageDataset:
    from sslbench.data import stl10

    splits = {}
    for split in ("train", "test"):
        images = stl10.read_images(files[f"stl10_binary/{split}_X.bin"])
        labels = stl10.read_labels(files[f"stl10_binary/{split}_y.bin"], len(images))
        splits[split] = (images, labels)
    unlabeled = stl10.read_images(files["stl10_binary/unlabeled_X.bin"])
    return ImageDataset(
        info, *splits["train"], *splits["test"], source=str(folder), unlabeled_images=unlabeled
    )


def _load_image_folder(
    info: DatasetInfo, folder: Path, class_list: str | os.PathLike[str] | None, image_size: int
) -> ImageDataset:
    from sslbench.data import imagefolder

    classes = imagefolder.find_classes(folder, class_list)
    train = imagefolder.read_split(folder, "train", classes, image_size)
    test = imagefolder.read_split(folder, "val", classes, image_size)
    sized = replace(info, num_classes=len(classes), image_size=image_size)
    return ImageDataset(sized, *train, *test, source=str(folder))
