"""Read CIFAR-10 / CIFAR-100 in their python version (pickled batches), as uint8 tensors.

Each batch file is a pickled dict (written by Python 2) with `b"data"`, a uint8 array
[N, 3072] holding each image's red, green and blue 32×32 planes in row-major order, and the
labels as a list: `b"labels"` (CIFAR-10) or `b"fine_labels"` (CIFAR-100).
See https://www.cs.toronto.edu/~kriz/cifar.html.

The unpickler only rebuilds numpy arrays: a file that asks for anything else is refused, so a
tampered dataset file cannot run code.
"""

from __future__ import annotations

import importlib
import pickle
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sslbench.data.rawfiles import open_binary
from sslbench.errors import UserError

if TYPE_CHECKING:
    import torch

# What numpy arrays pickle to, named as numpy 1.x did (numpy 2 moved numpy.core to numpy._core).
_ARRAY_GLOBALS = {
    ("_codecs", "encode"),  # how Python 3 writes bytes into a protocol-2 pickle
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
}
_NUMPY_CORE = "numpy._core" if hasattr(np, "_core") else "numpy.core"


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays and plain containers, nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        legacy = module.replace("numpy._core", "numpy.core")
        if (legacy, name) not in _ARRAY_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return getattr(importlib.import_module(legacy.replace("numpy.core", _NUMPY_CORE)), name)


def read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch as uint8 images [N, 3, 32, 32] and int64 labels [N]."""
    try:
        with open_binary(path) as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except (OSError, EOFError, zlib.error, pickle.UnpicklingError, ValueError) as exc:
        raise UserError(f"corrupt or unreadable CIFAR batch {path}: {exc}") from None
    key = label_key.encode()
    if not isinstance(batch, dict) or b"data" not in batch or key not in batch:
        raise UserError(f"{path}: not a CIFAR batch (expected a dict with b'data' and {key!r})")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(
            f"{path}: data of shape {list(data.shape)} {data.dtype}, expected [N, 3072] uint8"
        )
    if labels.shape != (len(data),):
        raise UserError(f"{path}: {labels.shape} labels for {len(data)} images")
    return data.reshape(-1, 3, 32, 32), labels


def read_split(
    paths: list[Path], label_key: str, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batches in `paths`, concatenated: uint8 images [N, 3, 32, 32], int64 labels [N]."""
    import torch

    batches = [read_batch(path, label_key) for path in paths]
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"{paths[0].parent}: labels outside 0..{num_classes - 1}")
    return torch.from_numpy(images), torch.from_numpy(labels)
