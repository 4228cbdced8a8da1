"""Optimizers (AdamW, SGD, LARS) and the learning-rate schedule (linear warmup, then cosine
decay)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from sslbench.config import OptimizerConfig


def param_groups(model: nn.Module, weight_decay: float, lr: float) -> list[dict]:
    """Optimizer groups: biases and normalisation parameters (1-d tensors) get no weight decay
    and are excluded from LARS's adaptation (``lars_exclude``), as is usual.

    A method may split its parameters into groups with their own learning rate by defining
    ``param_groups() -> [{"params": [...], "lr_mult": float}, ...]`` (e.g. a predictor learning
    rate multiplier); each group's lr is ``lr * lr_mult`` and the schedule scales all of them.
    """
    split = getattr(model, "param_groups", None)
    method_groups = split() if callable(split) else [{"params": list(model.parameters())}]
    groups = []
    for group in method_groups:
        params = [p for p in group["params"] if p.requires_grad]
        group_lr = lr * group.get("lr_mult", 1.0)
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        groups += [{"params": decay, "weight_decay": weight_decay, "lr": group_lr,
                    "lars_exclude": False},
                   {"params": no_decay, "weight_decay": 0.0, "lr": group_lr,
                    "lars_exclude": True}]
    return [g for g in groups if g["params"]]


class LARS(torch.optim.Optimizer):
    """LARS: You, Gitman, Ginsburg, "Large Batch Training of Convolutional Networks", 2017, Alg. 1.

    For each parameter tensor w with gradient g (global lr γ, momentum m, weight decay β, trust
    coefficient η):

        λ = η ‖w‖ / (‖g‖ + β ‖w‖)        (the layer-wise local lr)
        v ← m v + γ λ (g + β w)
        w ← w − v

    λ = 1 where ‖w‖ or the denominator is 0 (a zero-initialised layer would never move), as in
    the SimCLR and BYOL implementations. Groups with ``lars_exclude`` (biases, norm parameters)
    skip the adaptation: v ← m v + γ (g + β w); :func:`param_groups` gives them β = 0.
    """

    def __init__(self, params: Any, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 1e-3) -> None:
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta,
                    "lars_exclude": False}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            wd, eta = group["weight_decay"], group["eta"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad.add(p, alpha=wd)
                if not group["lars_exclude"]:
                    w_norm = torch.linalg.vector_norm(p)
                    denom = torch.linalg.vector_norm(p.grad) + wd * w_norm
                    usable = (w_norm > 0) & (denom > 0)
                    trust = torch.where(usable, eta * w_norm / denom.clamp_min(1e-30),
                                        torch.ones_like(w_norm))
                    update.mul_(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(update, alpha=group["lr"])
                p.sub_(buf)
        return loss


def base_lr(cfg: OptimizerConfig, batch_size: int | None) -> float:
    """The learning rate for the global batch ``batch_size``: ``lr_scaling=linear`` scales
    ``lr`` by batch / ``reference_batch_size`` (Goyal et al., "Accurate, Large Minibatch SGD",
    2017, §2.1), ``none`` keeps it. The batch is the global one, so a run gets the same lr on
    any number of workers."""
    if cfg.lr_scaling == "linear" and batch_size is not None:
        return cfg.lr * batch_size / cfg.reference_batch_size
    return cfg.lr


def build_optimizer(model: nn.Module, cfg: OptimizerConfig,
                    batch_size: int | None = None) -> torch.optim.Optimizer:
    lr = base_lr(cfg, batch_size)
    groups = param_groups(model, cfg.weight_decay, lr)
    if cfg.name == "lars":
        return LARS(groups, lr=lr, momentum=cfg.momentum, eta=cfg.eta)
    for group in groups:
        del group["lars_exclude"]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=lr)


def lr_factor(step: int, total_steps: float, warmup_steps: int, min_ratio: float) -> float:
    """Multiplier of the base lr at ``step``: linear warmup to 1, then cosine to ``min_ratio``
    (a total of ``math.inf``, not planned yet, keeps the factor at 1 after the warm-up)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class WarmupCosine:
    """:func:`lr_factor` as the scheduler's multiplier, with a total a wall-clock budget fixes
    after training has started (:mod:`sslbench.train.budget`). An object rather than a lambda:
    ``LambdaLR`` saves its attributes with the scheduler, so a checkpoint keeps the total."""

    def __init__(self, total_steps: float, warmup_steps: int, min_ratio: float) -> None:
        self.total_steps, self.warmup_steps, self.min_ratio = total_steps, warmup_steps, min_ratio

    @property
    def planned(self) -> bool:
        return math.isfinite(self.total_steps)

    def fix_total(self, total_steps: int, max_warmup_share: float = 1.0) -> None:
        """Plan the cosine to end at ``total_steps``; the warm-up takes at most
        ``max_warmup_share`` of them."""
        self.total_steps = total_steps
        self.warmup_steps = min(self.warmup_steps, math.floor(max_warmup_share * total_steps))

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.total_steps, self.warmup_steps, self.min_ratio)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimizerConfig,
                    total_steps: int | None, steps_per_epoch: int, max_warmup_share: float = 1.0
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up + cosine over ``total_steps`` (None: not known yet; see :class:`WarmupCosine`),
    the warm-up at most ``max_warmup_share`` of the total."""
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    schedule = WarmupCosine(math.inf, warmup, cfg.min_lr_ratio)
    if total_steps is not None:
        schedule.fix_total(total_steps, max_warmup_share)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
