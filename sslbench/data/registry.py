"""The datasets sslbench knows: metadata only (shape, classes, normalisation, expected files).

Torch-free on purpose: `sslbench datasets` and `sslbench --help` read this without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from sslbench.errors import UserError

IDX_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
"""The four files of an MNIST-like dataset, as distributed (gzip-compressed IDX)."""

CIFAR10_FILES: tuple[str, ...] = tuple(
    f"cifar-10-batches-py/{batch}"
    for batch in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
)
"""CIFAR-10's python version as extracted from `cifar-10-python.tar.gz`: 5 train + 1 test pickle."""

CIFAR100_FILES: tuple[str, ...] = ("cifar-100-python/train", "cifar-100-python/test")

STL10_FILES: tuple[str, ...] = tuple(
    f"stl10_binary/{name}.bin" for name in ("train_X", "train_y", "test_X", "test_y", "unlabeled_X")
)
"""STL-10's binary version as extracted from `stl10_binary.tar.gz`."""

IMAGEFOLDER_DIRS: tuple[str, ...] = ("train/", "val/")
"""An image-folder dataset: `train/<class>/*.jpg` and `val/<class>/*.jpg` (`x/` = a folder)."""

_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is, without loading it."""

    name: str
    num_classes: int
    channels: int
    image_size: int
    mean: tuple[float, ...]  # per channel, in [0, 1] pixel units
    std: tuple[float, ...]
    description: str
    files: tuple[str, ...]  # expected in its folder (paths; "x/" is a folder); () when generated
    downloadable: bool
    layout: str = "*.gz"  # what its folder holds, for messages: DIR/<name>/<layout>
    # imagefolder: the classes come from the folder or class list (0 here) and the size from
    # `data.image_size` (image_size here is its default)
    configurable: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        """One image as (channels, height, width)."""
        return (self.channels, self.image_size, self.image_size)


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="fashion-mnist",
            num_classes=10,
            channels=1,
            image_size=28,
            mean=(0.2860,),
            std=(0.3530,),
            description="Zalando clothing images, 60k train / 10k test (Xiao et al. 2017)",
            files=IDX_FILES,
            downloadable=True,
        ),
        DatasetInfo(
            name="mnist",
            num_classes=10,
            channels=1,
            image_size=28,
            mean=(0.1307,),
            std=(0.3081,),
            description="handwritten digits, 60k train / 10k test (LeCun et al. 1998)",
            files=IDX_FILES,
            downloadable=True,
        ),
        DatasetInfo(
            name="cifar10",
            num_classes=10,
            channels=3,
            image_size=32,
            mean=(0.4914, 0.4822, 0.4465),
            std=(0.2470, 0.2435, 0.2616),
            description="32×32 colour images, 50k train / 10k test (Krizhevsky 2009)",
            files=CIFAR10_FILES,
            downloadable=True,
            layout="cifar-10-batches-py/ (the python version)",
        ),
        DatasetInfo(
            name="cifar100",
            num_classes=100,
            channels=3,
            image_size=32,
            mean=(0.5071, 0.4865, 0.4409),
            std=(0.2673, 0.2564, 0.2762),
            description="32×32 colour images, 100 fine classes, 50k train / 10k test",
            files=CIFAR100_FILES,
            downloadable=True,
            layout="cifar-100-python/ (the python version)",
        ),
        DatasetInfo(
            name="stl10",
            num_classes=10,
            channels=3,
            image_size=96,
            mean=(0.4467, 0.4398, 0.4066),
            std=(0.2603, 0.2566, 0.2713),
            description="96×96 colour images, 100k unlabeled (pretraining) / 5k train / 8k test "
            "(Coates et al. 2011)",
            files=STL10_FILES,
            downloadable=True,
            layout="stl10_binary/*.bin",
        ),
        DatasetInfo(
            name="imagefolder",
            num_classes=0,
            channels=3,
            image_size=96,
            mean=_IMAGENET_MEAN,
            std=_IMAGENET_STD,
            description="train/<class>/*.jpg and val/<class>/*.jpg, e.g. ImageNet-100 chosen by "
            "data.class_list, resized to data.image_size",
            files=IMAGEFOLDER_DIRS,
            downloadable=False,
            layout="train/<class>/*.jpg and val/<class>/*.jpg",
            configurable=True,
        ),
        DatasetInfo(
            name="synthetic",
            num_classes=10,
            channels=1,
            image_size=28,
            mean=(0.5,),
            std=(0.19,),
            description="generated stripe/plaid/ring textures, 1024 train / 512 test, for tests",
            files=(),
            downloadable=False,
        ),
    )
}


def get_info(name: str) -> DatasetInfo:
    """The registered dataset called `name`; a UserError listing the choices otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        choices = ", ".join(DATASETS)
        raise UserError(f"unknown dataset {name!r}: choose one of {choices}") from None
