"""Read a folder of class subfolders (`train/<class>/*.jpg`, `val/<class>/*.jpg`) into memory.

Every image is decoded as RGB, centre-cropped to a square and resized to `image_size`, and kept as
uint8, like the other datasets: ImageNet-100 at 96 px is about 3.5 GB. A class list (one folder
name per line; blank lines and `#` comments skipped) picks the classes, e.g. ImageNet-100's 100
WordNet ids; label i is the i-th class of the list (of the sorted folder names without one).
Images are decoded by a thread pool: Pillow releases the GIL while decoding.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sslbench.errors import UserError

if TYPE_CHECKING:
    import torch

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val")


def read_class_list(path: str | os.PathLike[str]) -> list[str]:
    """The class folder names listed in `path`, in order; a UserError if unusable."""
    file = Path(path).expanduser()
    try:
        lines = file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(
            f"cannot read class list {str(file)!r} ({exc}); set data.class_list "
            "to a text file with one class folder name per line"
        ) from None
    classes = [line.split("#", 1)[0].strip() for line in lines]
    classes = [name for name in classes if name]
    if not classes:
        raise UserError(
            f"class list {str(file)!r} names no class; write one class folder name per line"
        )
    duplicates = sorted({name for name in classes if classes.count(name) > 1})
    if duplicates:
        raise UserError(f"class list {str(file)!r} names {', '.join(duplicates)} more than once")
    return classes


def find_classes(root: Path, class_list: str | os.PathLike[str] | None) -> list[str]:
    """The classes to load: those of `class_list`, each checked to be a folder of every split,
    or every class folder of `root/train` (sorted) when there is no list."""
    if class_list is None:
        classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
        if not classes:
            raise UserError(
                f"{root / 'train'} holds no class folders; expected train/<class>/*.jpg"
            )
        return classes
    classes = read_class_list(class_list)
    for split in SPLITS:
        missing = [name for name in classes if not (root / split / name).is_dir()]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise UserError(
                f"class list {str(class_list)!r}: {len(missing)} class(es) not in "
                f"{root / split}: {shown}; fix the list or the data folder"
            )
    return classes


def list_images(folder: Path) -> list[Path]:
    """The image files directly in `folder`, sorted by name."""
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )


def load_image(path: Path, size: int) -> np.ndarray:
    """One image as uint8 [3, size, size]: RGB, the centred square of its shorter side, resized."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when it can
            square = ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.BILINEAR)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise UserError(f"cannot decode image {path}: {exc}") from None
    return np.array(square, dtype=np.uint8).transpose(2, 0, 1)  # a writable copy


def read_split(
    root: Path, split: str, classes: list[str], size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`root/split/<class>/*` for the given classes: uint8 [N, 3, size, size], int64 labels [N]."""
    import torch

    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = list_images(root / split / name)
        if not files:
            raise UserError(
                f"{root / split / name} holds no images ({', '.join(IMAGE_EXTENSIONS)})"
            )
        paths += files
        labels += [label] * len(files)
    images = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for i, array in enumerate(pool.map(lambda p: load_image(p, size), paths)):
            images[i] = torch.from_numpy(array)
    return images, torch.tensor(labels, dtype=torch.int64)
