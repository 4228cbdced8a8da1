"""Optimizers (AdamW, SGD, LARS) and the learning-rate schedule (linear warmup, then cosine
decay)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from sslbench.config import OptimizerConfig


def param_groups(model: nn.Module, weight_decay: float, lr: float,
                 decay_1d: bool = False) -> list[dict]:
    """Optimizer groups: biases and normalisation parameters (1-d tensors) are excluded from
    LARS's adaptation (``lars_exclude``), as is usual, and get no weight decay unless
    ``decay_1d`` (``optimizer.decay_1d``: solo-learn's ``exclude_bias_n_norm_wd: false``, the
    setting of its SimSiam recipes).

    A method may split its parameters into groups with their own learning rate by defining
    ``param_groups() -> [{"params": [...], "lr_mult": float, "fixed_lr": bool}, ...]`` (e.g. a
    predictor learning rate multiplier); each group's lr is ``lr * lr_mult``, and the schedule
    scales all of them except the ``fixed_lr`` ones, which keep it (SimSiam §4.3, see
    :func:`build_scheduler`).
    """
    split = getattr(model, "param_groups", None)
    method_groups = split() if callable(split) else [{"params": list(model.parameters())}]
    groups = []
    for group in method_groups:
        params = [p for p in group["params"] if p.requires_grad]
        group_lr = lr * group.get("lr_mult", 1.0)
        fixed = {"fixed_lr": True} if group.get("fixed_lr", False) else {}
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        groups += [{"params": decay, "weight_decay": weight_decay, "lr": group_lr,
                    "lars_exclude": False, **fixed},
                   {"params": no_decay, "weight_decay": weight_decay if decay_1d else 0.0,
                    "lr": group_lr, "lars_exclude": True, **fixed}]
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
    skip the adaptation: v ← m v + γ (g + β w); :func:`param_groups` gives them β = 0 (unless
    ``optimizer.decay_1d``).

    ``clip_lr``: the adapted lr γλ is capped at the scheduled γ, i.e. λ is replaced by
    min(λ / γ, 1) and the step uses γ · min(λ / γ, 1) = min(λ, γ) (solo-learn's
    ``clip_lars_lr``, ``solo/utils/lars.py``, from NVIDIA apex's LARC in "clip" mode).
    """

    def __init__(self, params: Any, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 1e-3, clip_lr: bool = False) -> None:
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta,
                    "lars_exclude": False, "clip_lr": clip_lr}
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
                    if group["clip_lr"]:  # the step's lr γ · min(λ/γ, 1) = min(λ, γ)
                        trust = torch.where(usable, (trust / group["lr"]).clamp_max(1.0), trust)
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
    groups = param_groups(model, cfg.weight_decay, lr, cfg.decay_1d)
    if cfg.name == "lars":
        return LARS(groups, lr=lr, momentum=cfg.momentum, eta=cfg.eta, clip_lr=cfg.lars_clip_lr)
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


class FixedLR:
    """The multiplier of a group whose lr is not scheduled: 1 at every step, warm-up included.
    SimSiam §4.3 ("fix_pred_lr" in the official code; solo-learn's ``static_lr``): the
    predictor keeps its initial lr while the rest follows the schedule."""

    def __call__(self, step: int) -> float:
        return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimizerConfig,
                    total_steps: int | None, steps_per_epoch: int, max_warmup_share: float = 1.0
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up + cosine over ``total_steps`` (None: not known yet; see :class:`WarmupCosine`),
    the warm-up at most ``max_warmup_share`` of the total. Groups marked ``fixed_lr`` (see
    :func:`param_groups`) keep their lr (:class:`FixedLR`); the others share one schedule."""
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    schedule = WarmupCosine(math.inf, warmup, cfg.min_lr_ratio)
    if total_steps is not None:
        schedule.fix_total(total_steps, max_warmup_share)
    multipliers = [FixedLR() if group.get("fixed_lr", False) else schedule
                   for group in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, multipliers)


def planned_schedule(scheduler: torch.optim.lr_scheduler.LambdaLR) -> WarmupCosine:
    """The :class:`WarmupCosine` a scheduler of :func:`build_scheduler` shares between its
    scheduled groups (a budget fixes its total once training has started)."""
    return next(fn for fn in scheduler.lr_lambdas if isinstance(fn, WarmupCosine))
