"""Read STL-10's binary version (`stl10_binary/*.bin`) as uint8 tensors.

`*_X.bin` holds 96×96 RGB images back to back, 27 648 bytes each, every channel plane stored
column by column (Fortran order), so each plane is transposed on reading. `*_y.bin` holds one
byte per image, the class 1..10. See https://cs.stanford.edu/~acoates/stl10/.

The unlabeled split (100k images, 2.8 GB) is read in chunks into one preallocated tensor, so
memory peaks near its own size.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch

from sslbench.data.rawfiles import is_gzip, open_binary
from sslbench.errors import UserError

SIZE = 96
IMAGE_BYTES = 3 * SIZE * SIZE
_CHUNK = 4096  # images per read


def _planes_to_rows(raw: np.ndarray) -> torch.Tensor:
    """Bytes of n column-major images → uint8 [n, 3, 96, 96] in the usual row-major layout."""
    return torch.from_numpy(raw.reshape(-1, 3, SIZE, SIZE)).transpose(2, 3)


def read_images(path: Path) -> torch.Tensor:
    """A `*_X.bin` file as uint8 images [N, 3, 96, 96], contiguous."""
    try:
        if is_gzip(path):  # size unknown before decompressing: read it whole
            data = bytearray()  # writable, as torch.from_numpy wants
            with open_binary(path) as f:
                while chunk := f.read(_CHUNK * IMAGE_BYTES):
                    data += chunk
            _check_whole(path, len(data))
            return _planes_to_rows(np.frombuffer(data, dtype=np.uint8)).contiguous()
        size = path.stat().st_size
        _check_whole(path, size)
        images = torch.empty((size // IMAGE_BYTES, 3, SIZE, SIZE), dtype=torch.uint8)
        with path.open("rb") as f:
            for start in range(0, len(images), _CHUNK):
                count = min(_CHUNK, len(images) - start)
                raw = np.fromfile(f, dtype=np.uint8, count=count * IMAGE_BYTES)
                images[start : start + count] = _planes_to_rows(raw)
        return images
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise UserError(f"corrupt or unreadable STL-10 file {path}: {exc}") from None


def _check_whole(path: Path, size: int) -> None:
    if size % IMAGE_BYTES:
        raise UserError(
            f"{path}: {size} bytes is not a whole number of 96×96 RGB images "
            f"({IMAGE_BYTES} bytes each); the file is truncated or not STL-10"
        )


def read_labels(path: Path, num_images: int) -> torch.Tensor:
    """A `*_y.bin` file (classes 1..10) as int64 labels 0..9, one per image."""
    try:
        with open_binary(path) as f:
            labels = np.frombuffer(f.read(), dtype=np.uint8).astype(np.int64) - 1
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise UserError(f"corrupt or unreadable STL-10 file {path}: {exc}") from None
    if labels.shape != (num_images,):
        raise UserError(f"{path}: {labels.size} labels for {num_images} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise UserError(f"{path}: labels outside 1..10")
    return torch.from_numpy(labels)
