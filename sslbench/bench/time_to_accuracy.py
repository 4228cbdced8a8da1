"""Time-to-accuracy: pretrain a recipe and probe the encoder at fixed points of training time.

The training clock runs only while the loop trains: at each checkpoint (every ``every_s`` seconds
of training) it stops, the encoder's linear-probe accuracy is measured (``eval.linear`` of the
recipe, frozen features of the train split → test split), and the clock resumes. Training ends
when the recipe's epochs are done or the clock reaches ``budget_s``; the encoder is probed once
more at the end. The curve is (training seconds, step, top-1) per checkpoint.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sslbench.config import RunConfig
from sslbench.data import ImageDataset
from sslbench.eval.features import extract_features
from sslbench.eval.layers import feature_module
from sslbench.eval.linear import linear_probe
from sslbench.methods import build_method
from sslbench.train.device import seed_everything
from sslbench.train.loop import pretrain


@dataclass(frozen=True)
class Checkpoint:
    train_s: float  # training time so far, evaluations excluded
    step: int
    top1: float  # linear-probe test accuracy, a fraction


class _BudgetSpent(Exception):
    """Raised from the step hook to end the loop when the training clock reaches the budget."""


class CheckpointClock:
    """An ``on_step_end`` hook that probes the encoder every ``every_s`` seconds of training time
    and ends training at ``budget_s``; time spent probing does not count."""

    def __init__(self, every_s: float, budget_s: float, probe: Callable[[], float],
                 on_checkpoint: Callable[[Checkpoint], None],
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.every_s, self.budget_s, self.probe = every_s, budget_s, probe
        self.on_checkpoint, self.clock = on_checkpoint, clock
        self.curve: list[Checkpoint] = []
        self.paused_s = 0.0
        self.start = clock()
        self.next_at = every_s

    def train_s(self) -> float:
        return self.clock() - self.start - self.paused_s

    def __call__(self, step: int) -> None:
        elapsed = self.train_s()
        if elapsed >= self.next_at or elapsed >= self.budget_s:
            self.checkpoint(step, elapsed)
            while self.next_at <= elapsed:
                self.next_at += self.every_s
        if elapsed >= self.budget_s:
            raise _BudgetSpent

    def checkpoint(self, step: int, elapsed: float) -> None:
        paused = self.clock()
        point = Checkpoint(train_s=elapsed, step=step, top1=self.probe())
        self.curve.append(point)
        self.on_checkpoint(point)
        self.paused_s += self.clock() - paused


def linear_top1(method: nn.Module, cfg: RunConfig, dataset: ImageDataset,
                device: torch.device) -> float:
    """Test top-1 of the recipe's linear probe on the frozen features of ``eval.linear.layer``."""
    module, info = feature_module(method, cfg.eval.linear.layer), dataset.info
    train_x, test_x = (extract_features(module, images, info.mean, info.std, device)
                       for images in (dataset.train_images, dataset.test_images))
    result = linear_probe(train_x, dataset.train_labels, test_x, dataset.test_labels,
                          info.num_classes, cfg.eval.linear, seed=cfg.train.seed, device=device)
    return result["top1"]


def time_to_accuracy(cfg: RunConfig, dataset: ImageDataset, device: torch.device, *,
                     every_s: float, budget_s: float,
                     on_checkpoint: Callable[[Checkpoint], None] = lambda point: None,
                     probe: Callable[[nn.Module], float] | None = None) -> list[Checkpoint]:
    """Pretrain ``cfg`` on ``dataset`` with checkpoints every ``every_s`` training seconds (see the
    module docstring); ``probe`` replaces the linear probe (tests)."""
    seed_everything(cfg.train.seed)
    method = build_method(cfg, dataset.info.channels)

    def measure() -> float:
        return (probe or (lambda m: linear_top1(m, cfg, dataset, device)))(method)

    clock = CheckpointClock(every_s, budget_s, measure, on_checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            result = pretrain(cfg, dataset, method, device, Path(tmp), show_progress=False,
                              on_step_end=clock)
        except _BudgetSpent:
            return clock.curve
    if not clock.curve or clock.curve[-1].step != result.steps:
        clock.checkpoint(result.steps, clock.train_s())
    return clock.curve
