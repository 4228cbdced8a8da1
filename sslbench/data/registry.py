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
    files: tuple[str, ...]  # expected in its folder; () when generated
    downloadable: bool

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
