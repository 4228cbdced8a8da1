"""How many steps a pretraining run trains for: its epochs, or a compute budget, planned so that
every schedule (the linear warm-up, the cosine learning rate, BYOL's cosine EMA τ) ends exactly
at the budget instead of being cut off by it.

- ``train.budget_steps``: that many optimizer steps.
- ``train.budget_flops``: as many steps as fit at the run's training FLOPs per step (counted once
  before training, :mod:`sslbench.train.flops`).
- ``train.budget_s``: seconds of training steps; the per-epoch monitor, checkpoints and the
  evaluations come on top. The first ``train.plan_steps`` steps are timed and the total is fixed
  then: ``plan_steps + ⌊(budget − seconds so far) / seconds per step⌋``, the rate measured over
  the steps after the first two (which carry one-off costs: allocation, autotuning, compilation;
  they still count against the budget). Until the total is known the schedules hold their
  starting values after the warm-up (cosine factor 1, τ at its base); the planned cosine would
  have moved by at most (π · plan_steps / total)² / 4 of its range by then. The total is
  re-planned at ``REPLAN_AT`` (¼, ½, ¾) of the first plan, from the seconds left and the rate of
  the steps since the previous timing: 18 timed steps are a small sample, and a step's time drifts
  over a run (the machine's clock, other load, a growing queue). A re-plan moves the rest of the
  cosine by the change of the total, a few percent where the first plan was close. In a
  distributed run every rank plans from the mean of the ranks' step times and of their seconds so
  far, so they all plan the same total and time the same steps next. A resumed run keeps the
  total its checkpoint holds (it re-plans only if the checkpoint came before the first plan).

A budgeted run's warm-up (``optimizer.warmup_epochs``) takes at most ``MAX_WARMUP_SHARE`` of its
planned steps: a warm-up counted in epochs would otherwise fill a short budget (one Fashion-MNIST
epoch is 234 steps of 256) and leave no room for the cosine. SimCLR warms up for 10 % of its
100-epoch schedule, MoCo v3 for 13 %, BYOL for 1 %.

The budget is recorded in the run's config and the total, the seconds and the FLOPs trained in its
summary, so `sslbench report` groups and compares runs by budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from sslbench.config import TrainConfig
from sslbench.config.budget import BUDGET_KEYS
from sslbench.distributed import collectives
from sslbench.errors import RunFailure, UserError

WARMUP_STEPS = 2  # timed steps left out of the rate
MAX_WARMUP_SHARE = 0.1  # of a budgeted run's planned steps
REPLAN_AT = (0.25, 0.5, 0.75)  # shares of the first planned total at which it is re-planned


def max_warmup_share(train: TrainConfig) -> float:
    """The share of its steps a run's warm-up may take: all of them for a run of epochs (as
    configured), ``MAX_WARMUP_SHARE`` for a budgeted one."""
    budgeted = any(getattr(train, key) is not None for key in BUDGET_KEYS)
    return MAX_WARMUP_SHARE if budgeted else 1.0


def fixed_total(train: TrainConfig, steps_per_epoch: int, flops_per_step: float) -> int | None:
    """The steps of a run whose length is known before it starts (epochs, steps or FLOPs); None
    for a wall-clock budget, which :class:`WallClockPlan` fixes after timing the first steps."""
    if train.budget_steps is not None:
        return train.budget_steps
    if train.budget_flops is not None:
        if not flops_per_step > 0:
            raise UserError("train.budget_flops: no FLOPs were counted in this method's step; "
                            "give the budget in time (--budget) or steps (--budget-steps)")
        return max(1, math.floor(train.budget_flops / flops_per_step))
    if train.budget_s is not None:
        return None
    return train.epochs * steps_per_epoch


@dataclass
class WallClockPlan:
    """Times steps ``start + 2`` and ``start + plan_steps`` (``start``: the step this process began
    at), fixes the run's total at the second, and re-plans it at ``REPLAN_AT`` of that first total
    (see the module docstring). :meth:`total` is called at every step :meth:`measures`."""

    budget_s: float
    plan_steps: int
    start_step: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    due: list[int] = field(default_factory=list)  # the steps still to be timed, in order
    mark: tuple[int, float] | None = None  # the last timed step and its training seconds
    totals: list[int] = field(default_factory=list)  # the totals planned so far

    def __post_init__(self) -> None:
        self.due = [self.start_step + WARMUP_STEPS, self.start_step + self.plan_steps]

    @property
    def finished(self) -> bool:
        return not self.due

    def measures(self, step: int) -> bool:
        """Whether the training seconds at the end of ``step`` are needed (the loop then waits
        for the device, so that the clock reads finished work)."""
        return bool(self.due) and step == self.due[0]

    def total(self, step: int, train_s: float) -> int | None:
        """Record ``train_s`` (training seconds after ``step``); at a planning step, the run's
        total steps from the rate since the previous timing."""
        self.due.pop(0)
        previous, self.mark = self.mark, (step, train_s)
        if previous is None:  # step start + 2: the rate is timed from here
            return None
        first, first_s = previous
        # the ranks' means of the rate and of the seconds so far: every rank plans the same total
        # (and so times the same steps next); NCCL reduces device tensors only
        means = collectives.mean_over_ranks(torch.tensor(
            [(train_s - first_s) / (step - first), train_s], dtype=torch.float64,
            device=self.device))
        per_step, train_s = (float(v) for v in means.cpu())
        if not per_step > 0:
            raise RunFailure(f"train.budget_s: the clock did not advance over steps {first}-{step}"
                             "; cannot plan the budget")
        # a step that fits to within a millionth of a step fits (floating-point rounding)
        total = step + max(0, math.floor((self.budget_s - train_s) / per_step + 1e-6))
        if not self.totals:  # the first plan: re-plan at shares of it, each after a long window
            after = step
            for share in REPLAN_AT:
                at = round(share * total)
                if at >= after + self.plan_steps and at < total:
                    self.due.append(at)
                    after = at
        self.totals.append(total)
        return total


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
