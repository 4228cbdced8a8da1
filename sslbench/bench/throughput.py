"""Training throughput of one method, model and batch, through three data paths:

(a) ``real``: the training loop with sslbench's batched augmentation (uint8 data on the device);
(b) ``ceiling``: the same loop on views prepared in advance (forward, backward, optimizer step);
(d) ``conventional``: the same loop fed by torchvision transforms on PIL images in DataLoader
    workers (:mod:`sslbench.bench.conventional`);
(f) ``stream``: with prepared data (``data.prepared``), the same loop streaming its batches from
    the shards (:mod:`sslbench.data.stream`: read, shuffled, decoded by ``data.workers``
    processes or on the device), beside (a) on the first images of the same shards in memory.

Each path is timed by the same clock, steps ``warmup + 1`` to ``warmup + steps`` of an epoch
(CUDA is synchronised at those two steps only), in rounds that interleave the paths so that a
change of machine load hits all of them alike; the figure is the median over the rounds.
Images per second count images, not views (each image gives two views). The peak resident
memory of each path is measured alone (Linux: the high-water mark is reset before each one).
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from sslbench.config import RunConfig
from sslbench.data import ImageDataset, get_info
from sslbench.data.augment import pretraining_augment
from sslbench.methods import build_method
from sslbench.train.loop import ViewMaker, pretrain

PATHS = ("real", "ceiling", "conventional", "stream")


@dataclass(frozen=True)
class Throughput:
    """Images per second of each data path (median over rounds) and the ratios between them."""

    real: float  # (a)
    ceiling: float  # (b)
    conventional: float | None = None  # (d); None when not measured
    stream: float | None = None  # (f); None when not measured
    rounds: dict[str, list[float]] = field(default_factory=dict)  # every round's img/s per path
    peak_rss_mb: dict[str, float] = field(default_factory=dict)  # per path, where measurable

    @property
    def overhead(self) -> float:
        """(c) the share of the step that the data path costs: 1 - a/b."""
        return 1 - self.real / self.ceiling

    def summary(self) -> dict[str, float]:
        """The figures recorded as the run's summary (img/s and the ratios (c), (e))."""
        out = {"real_img_s": self.real, "ceiling_img_s": self.ceiling, "overhead": self.overhead}
        if self.conventional is not None:
            out |= {"conventional_img_s": self.conventional,
                    "real_over_conventional": self.real / self.conventional,
                    "ceiling_over_conventional": self.ceiling / self.conventional}
        if self.stream is not None:
            out |= {"stream_img_s": self.stream, "stream_overhead": 1 - self.stream / self.ceiling,
                    "stream_over_real": self.stream / self.real}
        return out | {f"{path}_peak_rss_mb": mb for path, mb in self.peak_rss_mb.items()}

    @classmethod
    def from_rounds(cls, rounds: dict[str, list[float]],
                    peak_rss_mb: dict[str, float] | None = None) -> Throughput:
        """The medians of each path's rounds."""
        median = {path: statistics.median(rates) for path, rates in rounds.items() if rates}
        return cls(real=median["real"], ceiling=median["ceiling"],
                   conventional=median.get("conventional"), stream=median.get("stream"),
                   rounds=rounds, peak_rss_mb=peak_rss_mb or {})


@dataclass(frozen=True)
class ThroughputSettings:
    steps: int = 20  # timed steps per round
    warmup: int = 2  # untimed steps at the start of each round
    rounds: int = 3
    workers: int = 2  # DataLoader workers of the conventional pipeline; 0 skips it


class StepClock:
    """An ``on_step_end`` hook: the time of step ``warmup`` and of the last step."""

    def __init__(self, warmup: int, last: int, device: torch.device) -> None:
        self.warmup, self.last, self.device = warmup, last, device
        self.marks: dict[int, float] = {}

    def __call__(self, step: int) -> None:
        if step in (self.warmup, self.last):
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.marks[step] = time.perf_counter()

    def seconds(self) -> float:
        return self.marks[self.last] - self.marks[self.warmup]


class PreparedViews:
    """A view maker that returns views made in advance, in turn: no data path at all."""

    def __init__(self, views: list[torch.Tensor]) -> None:
        self.views, self.calls = views, 0

    def __call__(self, images: torch.Tensor, generator: torch.Generator, view: int
                 ) -> torch.Tensor:
        out = self.views[self.calls % len(self.views)]
        self.calls += 1
        return out


def prepare_views(cfg: RunConfig, dataset: ImageDataset, device: torch.device,
                  count: int) -> list[torch.Tensor]:
    """``count`` batches of all their views (two, plus any small crops), flattened, made by the
    configured augmentation."""
    augment = pretraining_augment(cfg.augment, dataset.info)  # (a)'s views, e.g. 224 px crops
    gen = torch.Generator(device=device).manual_seed(cfg.train.seed)
    images = dataset.pretrain_images.to(device)
    batch = cfg.train.batch_size
    views = []
    for i in range(count):
        x = images[i * batch:(i + 1) * batch]
        views += augment.make_views(x, gen)
    return views


def measure(cfg: RunConfig, dataset: ImageDataset, device: torch.device,
            settings: ThroughputSettings, echo: Callable[[str], None] = print,
            stream: ImageDataset | None = None) -> Throughput:
    """Time the data paths on ``cfg``'s method, model and batch (see the module docstring);
    ``stream``: a streamed dataset (its shards) for path (f)."""
    batch = cfg.train.batch_size
    steps = settings.warmup + settings.steps
    images = dataset.pretrain_images[:steps * batch]
    # one epoch of exactly `steps` steps per round
    timed = replace(dataset, train_images=images, unlabeled_images=None)
    cfg = replace(cfg, train=replace(cfg.train, epochs=1))
    method = build_method(cfg, dataset.info.channels)
    makers: dict[str, Callable[[], ViewMaker | None]] = {
        "real": lambda: None,  # the loop's own BatchAugment
        "ceiling": lambda: PreparedViews(prepare_views(cfg, timed, device, min(steps, 4))),
    }
    data = dict.fromkeys(makers, timed)
    if stream is not None:  # an epoch of the first shards that hold `steps` batches
        makers["stream"], data["stream"] = (lambda: None), first_shards(stream, steps * batch)
    if settings.workers > 0:
        from sslbench.bench.conventional import LoaderViews, TwoViewPILDataset, pil_transform

        info = dataset.info
        view1, view2 = (pil_transform(cfg.augment.view(i), mean=info.mean, std=info.std,
                                      size=info.image_size, channels=info.channels)
                        for i in (1, 2))
        pil_data = TwoViewPILDataset(images, view1, view2)
        makers["conventional"] = lambda: LoaderViews(pil_data, batch, settings.workers,
                                                     seed=cfg.train.seed)
        data["conventional"] = timed
    rounds: dict[str, list[float]] = {path: [] for path in makers}
    peaks: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(settings.rounds):
            for path, make in makers.items():
                clock = StepClock(settings.warmup, steps, device)
                resettable = reset_peak_rss()
                pretrain(cfg, data[path], method, device, Path(tmp), show_progress=False,
                         augment=make(), on_step_end=clock)
                if resettable:
                    peaks[path] = max(peaks.get(path, 0.0), current_peak_rss_mb())
                rate = settings.steps * batch / clock.seconds()
                rounds[path].append(rate)
                echo(f"  round {r + 1}/{settings.rounds} {path:>12}: {rate:8.1f} img/s")
    return Throughput.from_rounds(rounds, peaks)


def first_shards(dataset: ImageDataset, images: int) -> ImageDataset:
    """``dataset`` (streamed) with its pretraining split cut to the first shards that hold
    ``images`` images: a short epoch for timing."""
    assert dataset.shards is not None
    manifest = dataset.shards.manifest
    split = manifest.splits[manifest.pretrain_split]
    counts = [s.count for s in split.shards]
    keep = next((k for k in range(1, len(counts) + 1) if sum(counts[:k]) >= images),
                len(counts))
    cut = replace(split, shards=split.shards[:keep], count=sum(counts[:keep]))
    short = replace(manifest, splits={**manifest.splits, manifest.pretrain_split: cut})
    return replace(dataset, shards=replace(dataset.shards, manifest=short))


def reset_peak_rss() -> bool:
    """Reset this process's peak resident memory (Linux ``clear_refs``); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def current_peak_rss_mb() -> float:
    """The peak resident memory since the last reset (``VmHWM``), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """Peak resident memory of this process and of its largest child (the DataLoader workers),
    and the peak GPU memory allocated on CUDA, in MiB."""
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "peak_worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
    if device.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def random_dataset(name: str, count: int, seed: int = 0) -> ImageDataset:
    """``count`` random uint8 images with the shape and statistics of dataset ``name``: the speed
    of a training step does not depend on the pixel values, so a dataset not on disk (CIFAR-10
    here) can still be timed."""
    info = get_info(name)
    gen = torch.Generator().manual_seed(seed)
    shape = (count, info.channels, info.image_size, info.image_size)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, info.num_classes, (count,), generator=gen)
    return ImageDataset(info, images, labels, images[:0], labels[:0],
                        source=f"random(seed={seed})")
