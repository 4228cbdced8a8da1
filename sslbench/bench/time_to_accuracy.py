"""Time-to-accuracy: the linear-probe accuracy a recipe reaches at each of several compute budgets.

Each budget is a complete run of its own: the recipe pretrained for that many seconds of training
steps, with its schedules (warm-up, cosine learning rate, EMA τ) planned to end exactly there
(:mod:`sslbench.train.budget`), then probed once (``eval.linear`` of the recipe, frozen features of
the train split → test split, the number this benchmark reports). The curve is the best the recipe
does at each budget — not one long schedule probed along the way, whose learning rate has not
annealed at the early points. Probing is outside the budget; the points cost the sum of the
budgets.

Beside the curve, :func:`baselines` probes what needs no pretraining at all, with the same probe:
the encoder at its random initialisation (read at the same ``eval.linear.layer``) and the raw
pixels. A recipe is worth its budget by how far its curve climbs above those two.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Sequence
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
from sslbench.train import contention
from sslbench.train.device import seed_everything
from sslbench.train.loop import pretrain


@dataclass(frozen=True)
class BudgetPoint:
    budget_s: float
    train_s: float  # seconds of training steps the run took (planned to be budget_s)
    steps: int
    top1: float  # linear-probe test accuracy, a fraction
    others_cpu: float | None = None  # cores other processes kept busy meanwhile (contention)


def linear_top1(method: nn.Module, cfg: RunConfig, dataset: ImageDataset,
                device: torch.device) -> float:
    """Test top-1 of the recipe's linear probe on the frozen features of ``eval.linear.layer``."""
    module, info = feature_module(method, cfg.eval.linear.layer), dataset.info
    train_x, test_x = (extract_features(module, images, info.mean, info.std, device)
                       for images in (dataset.train_images, dataset.test_images))
    result = linear_probe(train_x, dataset.train_labels, test_x, dataset.test_labels,
                          info.num_classes, cfg.eval.linear, seed=cfg.train.seed, device=device)
    return result["top1"]


def baselines(cfg: RunConfig, dataset: ImageDataset, device: torch.device) -> dict[str, float]:
    """Linear top-1 of the recipe's probe on what takes no pretraining: ``random init`` (the
    method's encoder as built with the recipe's seed, at ``eval.linear.layer``) and ``raw
    pixels`` (the standardised pixels, flattened)."""
    seed_everything(cfg.train.seed)
    untrained = build_method(cfg, dataset.info.channels)
    pixels = nn.Module()
    pixels.backbone = nn.Flatten()  # a "method" whose backbone output is the image itself
    raw_cfg = dataclasses.replace(cfg, eval=dataclasses.replace(
        cfg.eval, linear=dataclasses.replace(cfg.eval.linear, layer="backbone")))
    return {"random init": linear_top1(untrained, cfg, dataset, device),
            "raw pixels": linear_top1(pixels, raw_cfg, dataset, device)}


def with_budget(cfg: RunConfig, budget_s: float) -> RunConfig:
    """``cfg`` trained for ``budget_s`` seconds instead of its epochs or other budget."""
    train = dataclasses.replace(cfg.train, budget_s=budget_s, budget_steps=None,
                                budget_flops=None)
    return dataclasses.replace(cfg, train=train)


def time_to_accuracy(cfg: RunConfig, dataset: ImageDataset, device: torch.device, *,
                     budgets_s: Sequence[float],
                     on_point: Callable[[BudgetPoint], None] = lambda point: None,
                     probe: Callable[[nn.Module], float] | None = None,
                     clock: Callable[[], float] = time.perf_counter) -> list[BudgetPoint]:
    """Pretrain ``cfg`` once per budget (shortest first), each a complete planned schedule, and
    probe each result (see the module docstring); ``probe`` replaces the linear probe and
    ``clock`` the training clock (tests)."""
    curve = []
    for budget_s in sorted(budgets_s):
        budgeted = with_budget(cfg, budget_s)
        seed_everything(cfg.train.seed)
        method = build_method(budgeted, dataset.info.channels)
        with tempfile.TemporaryDirectory() as tmp:
            before = contention.sample()
            result = pretrain(budgeted, dataset, method, device, Path(tmp), show_progress=False,
                              clock=clock)
            others = contention.others_cores(before, contention.sample())
        top1 = (probe or (lambda m: linear_top1(m, cfg, dataset, device)))(method)
        point = BudgetPoint(budget_s, result.train_s, result.steps, top1, others)
        on_point(point)
        curve.append(point)
    return curve
