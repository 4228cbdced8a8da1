"""Where the training loop takes each batch of uint8 images from.

In memory (the default, and what every dataset that fits uses): the images are on the device and
a batch is an index into them, by a seeded permutation per epoch of which each rank takes its
part (:func:`sslbench.distributed.collectives.shard`). Streamed (``data.storage=stream``): the
batches come from the prepared shards (:class:`sslbench.data.stream.ShardBatches`). Both give
the loop the same thing, this rank's uint8 batches of an epoch from a given batch on, so the
loop has one body; both are determined by the epoch's data-order generator.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import torch

from sslbench.config import RunConfig
from sslbench.data import ImageDataset
from sslbench.data.stream import ShardBatches
from sslbench.distributed import collectives
from sslbench.errors import UserError


class BatchSource(Protocol):
    steps_per_epoch: int

    def epoch(self, order: torch.Generator, first_batch: int = 0) -> Iterator[torch.Tensor]: ...
    def position(self, batches_done: int) -> dict[str, Any]: ...
    def check_position(self, saved: dict[str, Any] | None) -> None: ...
    def close(self) -> None: ...


class MemoryBatches:
    """Batches indexed from images held on the device."""

    def __init__(self, images: torch.Tensor, batch: int, name: str) -> None:
        self.images, self.batch = images, batch
        self.steps_per_epoch = images.shape[0] // batch  # the last partial batch is dropped
        if self.steps_per_epoch == 0:
            raise UserError(f"train.batch_size={batch} is larger than the {images.shape[0]} "
                            f"training images of {name}; use a smaller --batch-size")
        self.local_batch = batch // collectives.world_size()  # this rank's part

    def epoch(self, order: torch.Generator, first_batch: int = 0) -> Iterator[torch.Tensor]:
        # this rank's part of every global batch (all of it in a single process)
        perm = torch.randperm(self.images.shape[0], generator=order)
        idx = collectives.shard(perm, self.batch).to(self.images.device)
        b = self.local_batch
        for i in range(first_batch, self.steps_per_epoch):
            yield self.images[idx[i * b:(i + 1) * b]]

    def position(self, batches_done: int) -> dict[str, Any]:
        return {}  # the order is the seed's: the batch count (in the checkpoint) is enough

    def check_position(self, saved: dict[str, Any] | None) -> None:
        pass

    def close(self) -> None:
        pass


def batch_source(cfg: RunConfig, dataset: ImageDataset, device: torch.device) -> BatchSource:
    """The batches of ``dataset``'s pretraining split: streamed from its shards if it has them,
    else from memory on ``device``."""
    batch = cfg.train.batch_size
    if dataset.shards is None:
        return MemoryBatches(dataset.pretrain_images.to(device), batch, dataset.info.name)
    data = cfg.data
    # auto decodes in worker processes everywhere: nvJPEG on the device raced on an H200 (see
    # docs/streaming.md#gpu), so it is only taken when asked for
    on_device = data.decode == "device"
    return ShardBatches(dataset.shards, local_batch=batch // collectives.world_size(),
                        world=collectives.world_size(), device=device,
                        shuffle_buffer=data.shuffle_buffer, workers=data.workers,
                        decode_on_device=on_device)
