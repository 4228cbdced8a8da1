"""Read IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or not.

IDX layout: two zero bytes, a type code, the number of dimensions n, then n big-endian uint32
sizes, then the data in C order, big-endian. See http://yann.lecun.com/exdb/mnist/.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sslbench.errors import UserError

if TYPE_CHECKING:
    import torch

    from sslbench.data.registry import DatasetInfo

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxFormatError(ValueError):
    """Bytes that are not a well-formed IDX file."""


def parse_idx(data: bytes) -> np.ndarray:
    """Decode the bytes of an uncompressed IDX file into an array of its shape."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise IdxFormatError("bad magic number (not an IDX file)")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        raise IdxFormatError(f"unknown IDX type code 0x{type_code:02x}")
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise IdxFormatError(f"header truncated or {ndim} dimensions")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise IdxFormatError(f"{len(data)} bytes, expected {expected} for shape {shape}")
    # The copy makes the array writable and native-endian (torch.from_numpy wants both).
    return (
        np.frombuffer(data, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (`.gz` or plain, told apart by content); a corrupt one is a UserError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = gzip.decompress(raw) if raw[:2] == _GZIP_MAGIC else raw
        return parse_idx(data)
    except (OSError, EOFError, zlib.error, IdxFormatError) as exc:
        raise UserError(f"corrupt or unreadable IDX file {path}: {exc}") from None


def read_split(
    images_path: Path, labels_path: Path, info: DatasetInfo
) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as uint8 images [N, C, H, W] and int64 labels [N], checked against `info`."""
    import torch

    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim == 3:  # grayscale IDX files store [N, H, W]
        images = images[:, None]
    expected = f"[N, {info.channels}, {info.image_size}, {info.image_size}] uint8"
    if images.shape[1:] != info.shape or images.dtype != np.uint8:
        raise UserError(f"{images_path}: images of shape {list(images.shape)}, expected {expected}")
    if labels.shape != (len(images),):
        raise UserError(f"{labels_path}: {labels.shape} labels for {len(images)} images")
    if len(labels) and int(labels.max()) >= info.num_classes:
        raise UserError(f"{labels_path}: label {labels.max()} >= {info.num_classes} classes")
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
