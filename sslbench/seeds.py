"""The random streams derived from a run's one seed (``train.seed``), named in one place.

Each consumer seeds its own generator with ``seed + stream`` so that adding draws to one stream
never changes another's numbers. The training loop's per-epoch streams are derived separately
(:func:`sslbench.train.checkpoint.epoch_generators`).
"""

from __future__ import annotations

import enum


class Stream(enum.IntEnum):
    """Offsets added to the run's seed."""

    ORDER = 0  # a probe's or fine-tuning's data order and initialisation
    AUGMENT = 1  # a probe's or fine-tuning's augmentation
    DIAGNOSTICS = 2  # the views of the fixed diagnostics batch
    KNN_MONITOR = 3  # the train images of the per-epoch kNN monitor


def stream_seed(seed: int, stream: Stream) -> int:
    """The seed of ``stream`` for a run seeded with ``seed``."""
    return seed + int(stream)
