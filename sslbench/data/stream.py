"""Pretraining batches streamed from prepared shards (``data.storage=stream``).

One epoch of one rank, with WebDataset doing the reading and the splitting:

1. the shard list, shuffled with the epoch's seed (``wds.detshuffle``: the same order on every
   rank);
2. this rank's shards: ``wds.split_by_node`` (every ``world``-th shard from its rank on; it reads
   the rank and world size from ``torch.distributed`` or the launcher's environment), so ranks and
   nodes read disjoint shards;
3. the shards read in sequence (``wds.tarfile_to_samples``), the samples shuffled in a buffer of
   ``data.shuffle_buffer`` (``wds.shuffle``, seeded by the epoch and the rank);
4. the encoded images decoded in chunks: by ``data.workers`` processes (CPU; order kept), or as a
   batch on the device (``torchvision.io.decode_jpeg`` on CUDA: nvJPEG);
5. batches of ``B / world`` uint8 images on the device, for the batched augmentation.

The sample sequence depends on the seed, the epoch, the rank and world size, the buffer size and
the shards, never on the number of decoding processes; so the position in an epoch is one number,
the batches done, and resuming skips that many samples before any decoding (cheap: tar bytes).
Every rank takes the same number of steps: what the rank with the fewest samples can fill
(:func:`steps_per_epoch`); the samples of the others beyond it are left for that epoch.
"""

from __future__ import annotations

import itertools
import random
import tarfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from functools import partial
from typing import Any

import numpy as np
import torch

from sslbench.data.shards import Manifest, Prepared, decode_many, unpack_sample, webdataset
from sslbench.errors import RunFailure, UserError

_CHUNK = 64  # images per decoding task


def steps_per_epoch(manifest: Manifest, split: str, world: int, local_batch: int) -> int:
    """The steps every rank can fill in any epoch: the ``⌊S/W⌋`` smallest of the ``S`` shards'
    counts (the least a rank can be given), divided into batches of ``local_batch``."""
    counts = sorted(s.count for s in manifest.splits[split].shards)
    if len(counts) < world:
        raise UserError(f"the {split} split has {len(counts)} shard(s), fewer than the {world} "
                        "workers; prepare it again with a smaller --shard-size")
    steps = sum(counts[:len(counts) // world]) // local_batch
    if steps == 0:
        raise UserError(f"a worker's share of the {split} shards holds fewer than "
                        f"{local_batch} images (its part of train.batch_size); use a smaller "
                        "--batch-size")
    return steps


class ShardBatches:
    """This rank's uint8 batches [B/W, C, S, S] of each epoch, on ``device``."""

    def __init__(self, prepared: Prepared, *, local_batch: int, world: int, device: torch.device,
                 shuffle_buffer: int, workers: int, decode_on_device: bool) -> None:
        self.root, self.manifest = prepared.root, prepared.manifest
        self.split = self.manifest.pretrain_split
        self.local_batch, self.device, self.buffer = local_batch, device, shuffle_buffer
        self.steps_per_epoch = steps_per_epoch(self.manifest, self.split, world, local_batch)
        self.decode_on_device = decode_on_device
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self.identity = {"shards": self.manifest.to_json()["checksum"], "split": self.split,
                         "world": world, "local_batch": local_batch, "buffer": shuffle_buffer}

    def samples(self, seed: int, skip: int = 0) -> Iterator[tuple[int, int, bytes]]:
        """(stable index, label, encoded image) of this rank's epoch with ``seed``, after the
        first ``skip``."""
        wds = webdataset()
        urls = [str(self.root / s.name) for s in self.manifest.splits[self.split].shards]
        rank = wds.utils.pytorch_worker_info()[0]
        pipeline = wds.DataPipeline(
            wds.SimpleShardList(urls),
            wds.detshuffle(bufsize=len(urls), initial=len(urls), seed=seed),
            wds.split_by_node,
            wds.tarfile_to_samples(),
            wds.shuffle(self.buffer, initial=self.buffer, rng=random.Random(seed * 7 + rank)),
        )
        try:
            for sample in itertools.islice(pipeline, skip, None):
                yield unpack_sample(sample)
        except (OSError, ValueError, KeyError, tarfile.TarError) as exc:
            raise RunFailure(f"cannot read the shards of {self.root} ({type(exc).__name__}: "
                             f"{exc}); check them with `sslbench data verify {self.root}`"
                             ) from None

    def epoch(self, order: torch.Generator, first_batch: int = 0) -> Iterator[torch.Tensor]:
        """The batches of the epoch whose data-order generator is ``order`` (its seed is the
        epoch's: the same on every rank), from batch ``first_batch`` on."""
        b = self.local_batch
        samples = self.samples(order.initial_seed(), skip=first_batch * b)
        needed = (self.steps_per_epoch - first_batch) * b
        payloads = (payload for _, _, payload in itertools.islice(samples, needed))
        chunk = b if self.decode_on_device else _CHUNK
        decoded = self._decoded(_chunks(payloads, chunk))
        pending: list[torch.Tensor] = []
        have = 0
        for images in decoded:
            pending.append(images)
            have += images.shape[0]
            while have >= b:
                joined = torch.cat(pending) if len(pending) > 1 else pending[0]
                yield joined[:b].to(self.device, non_blocking=True)
                pending, have = [joined[b:]], have - b

    def position(self, batches_done: int) -> dict[str, Any]:
        """What a checkpoint keeps of the stream: which stream, and how far into the epoch."""
        return {**self.identity, "samples_done": batches_done * self.local_batch}

    def check_position(self, saved: dict[str, Any] | None) -> None:
        """A checkpoint's stream must be this one (same shards, ranks, batch and buffer)."""
        if saved is None:
            return
        ours = self.identity
        changed = [k for k in ours if saved.get(k) != ours[k]]
        if changed:
            raise UserError(f"the checkpoint was taken on another stream ({', '.join(changed)} "
                            "differ: prepared data, workers, batch size or data.shuffle_buffer "
                            "changed); resume with the run's own settings and data")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def _decoded(self, chunks: Iterator[list[bytes]]) -> Iterator[torch.Tensor]:
        m = self.manifest
        if self.decode_on_device:
            for chunk in chunks:
                yield decode_batch(chunk, m, self.device)
            return
        decode = partial(decode_many, encoding=m.encoding, channels=m.channels, size=m.size)
        if self.workers == 0:
            for chunk in chunks:
                yield torch.from_numpy(decode(chunk))
            return
        if self._pool is None:
            import multiprocessing

            # spawn: the workers import numpy and Pillow only (no torch, no inherited threads)
            self._pool = ProcessPoolExecutor(self.workers,
                                             mp_context=multiprocessing.get_context("spawn"))
        ahead: deque[Future[np.ndarray]] = deque()
        for chunk in chunks:  # keep 2 chunks per worker in flight, in order
            ahead.append(self._pool.submit(decode, chunk))
            if len(ahead) > 2 * self.workers:
                yield torch.from_numpy(_result(ahead.popleft()))
        while ahead:
            yield torch.from_numpy(_result(ahead.popleft()))


def decode_batch(payloads: list[bytes], manifest: Manifest, device: torch.device
                 ) -> torch.Tensor:
    """Stored images → uint8 [N, C, S, S] on ``device``, decoded there as one batch (JPEG:
    ``torchvision.io.decode_jpeg``, nvJPEG on CUDA)."""
    data = [torch.frombuffer(bytearray(p), dtype=torch.uint8) for p in payloads]
    m = manifest
    if m.encoding == "raw":
        return torch.stack(data).view(-1, m.channels, m.size, m.size).to(device)
    from torchvision.io import ImageReadMode, decode_jpeg

    mode = ImageReadMode.GRAY if m.channels == 1 else ImageReadMode.RGB
    try:
        images = torch.stack(decode_jpeg(data, mode=mode, device=device))
    except RuntimeError as exc:
        raise RunFailure(f"cannot decode an image of the shards: {exc}") from None
    if device.type == "cuda":
        # nvJPEG's batched decode raced with training on an H200 (non-finite losses at varying
        # steps; none with CUDA_LAUNCH_BLOCKING=1); this wait made it rarer, not gone, which is
        # why data.decode=auto never picks the device (docs/streaming.md#gpu)
        torch.cuda.synchronize(device)
    return images


def _result(future: Future[np.ndarray]) -> np.ndarray:
    try:
        return future.result()
    except ValueError as exc:  # a stored image that is not what the manifest says
        raise RunFailure(f"cannot decode an image of the shards: {exc}") from None


def _chunks(items: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk

