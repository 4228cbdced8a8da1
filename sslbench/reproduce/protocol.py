"""The protocol of Tschannen et al.'s experiments (ICLR 2020, sec. 3), as their public notebook
(google-research, ``mutual_information_representation_learning``) runs it, made resumable.

- **Data**: the full train and test splits, pixels in [0, 1]; x₁ the top 14 rows, x₂ the bottom
  14 (the ``infomax`` method's ``halves`` views take them from the full image).
- **Training**: Adam, constant learning rate, batches of 128 drawn epoch by epoch in a random
  order, a fixed number of steps (21 000), and an evaluation every 1 000 steps, at step 0 too.
- **Evaluation**: the bound with the trained critic on the test split (batches of 128, so that
  InfoNCE's ceiling is log 128 as in training) and the SAGA logistic regression of the notebook on
  the top-half codes of the whole train and test splits (:mod:`sslbench.eval.logistic`).

Each configuration is a **cell**: a run of kind ``reproduce`` (method ``infomax``), child of the
reproduction's run, whose evaluations are metric rows (``step``; ``epoch`` holds the evaluation
round, step ÷ 1 000, so that :meth:`Store.resume_run` drops the rounds a checkpoint does not
hold). A checkpoint is written after every evaluation and on SIGINT/SIGTERM. A cell whose bound
turns non-finite is FAILED with the step, and the grid goes on (the notebook, too, skips a failed
run). Running the same reproduction again skips the cells that finished (COMPLETED, or FAILED on
a non-finite bound, which would fail again) and continues any other from its checkpoint, bit for
bit on the CPU.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslbench.config import RunConfig
from sslbench.data import load_dataset
from sslbench.data.views import image_half
from sslbench.errors import RunFailure, RunKilled, UserError
from sslbench.eval.logistic import saga_logistic_accuracy
from sslbench.methods import build_method
from sslbench.mi.bounds import BOUNDS
from sslbench.reproduce import Echo, ReproSettings
from sslbench.resolve import resolve_config
from sslbench.run.lifecycle import CHECKPOINT_ARTIFACT, device_label, recording, runs_root
from sslbench.store import RunRecord, Store
from sslbench.train.checkpoint import (
    CHECKPOINT_NAME,
    epoch_generators,
    load_checkpoint,
    save_checkpoint,
)
from sslbench.train.device import seed_everything
from sslbench.train.interrupt import StopSignals
from sslbench.train.optim import build_optimizer

ENCODE_CHUNK = 2_000  # images per forward pass when encoding a whole split
NON_FINITE = "non-finite objective"
Evaluate = Callable[[nn.Module, int], dict[str, float]]  # (method, step) → metrics


@dataclasses.dataclass(frozen=True)
class Halves:
    """A dataset as the notebook feeds it: full images as floats in [0, 1], and labels."""

    name: str
    train_x: torch.Tensor  # [N, C, H, W]
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The paper's: 21 000 steps of batch 128, an evaluation every 1 000."""

    steps: int = 21_000
    eval_every: int = 1_000
    batch_size: int = 128

    def rounds(self, step: int) -> int:
        """The evaluation round of ``step`` (0 for the evaluation before training)."""
        return step // self.eval_every


def load_halves(s: ReproSettings, device: torch.device) -> Halves:
    """The dataset of ``s`` (all of it, or ``train_size`` / ``test_size`` random images of each
    split, fixed by the seed), scaled to [0, 1] on ``device``."""
    data = load_dataset(s.dataset, s.data_dir, seed=s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    splits = []
    for images, labels, size in ((data.train_images, data.train_labels, s.train_size),
                                 (data.test_images, data.test_labels, s.test_size)):
        keep = torch.randperm(images.shape[0], generator=gen)[:size] if size else slice(None)
        splits += [(images[keep].float() / 255).to(device), labels[keep].to(device)]
    return Halves(data.info.name, *splits)


def with_shared_noise(x: torch.Tensor, std: float, gen: torch.Generator) -> torch.Tensor:
    """Full images whose two halves get the same Gaussian noise (the notebook adds one noise
    tensor to x₁ and to x₂: ``x_1 += noise; x_2 += noise``)."""
    half = image_half(x, "top")
    noise = std * torch.randn(half.shape, generator=gen, device=x.device)
    return x + torch.cat([noise, noise], dim=-2)


@torch.no_grad()
def encode(encoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``encoder`` on every image, in chunks."""
    return torch.cat([encoder(images[i:i + ENCODE_CHUNK]).float()
                      for i in range(0, images.shape[0], ENCODE_CHUNK)])


@torch.no_grad()
def test_bound(method: nn.Module, images: torch.Tensor, bound: str, batch_size: int) -> float:
    """The mean of ``bound`` with the trained critic over the test split in batches of
    ``batch_size`` in stored order (the last, partial batch left out: every batch has the same
    ceiling)."""
    values = [BOUNDS[bound](method.scores(images[i:i + batch_size], images[i:i + batch_size]))
              for i in range(0, images.shape[0] - batch_size + 1, batch_size)]
    return torch.stack(values).mean().item()


def probe_and_bound(data: Halves, schedule: Schedule, seed: int, noise_std: float = 0.0,
                    extra: Evaluate | None = None) -> Evaluate:
    """The notebook's evaluation of an ``infomax`` method on the two halves: the SAGA logistic
    regression on the top-half codes, the bound (and |Î − t| with a target) on the test split;
    then what ``extra`` measures. With ``noise_std`` the codes are of noisy images, as the
    notebook computes them."""

    def evaluate(method: nn.Module, step: int) -> dict[str, float]:
        gen = torch.Generator(device=data.train_x.device).manual_seed(seed * 1_000_003 + step)
        train_x, test_x = data.train_x, data.test_x
        if noise_std > 0:
            train_x, test_x = (with_shared_noise(x, noise_std, gen) for x in (train_x, test_x))
        cfg = method.cfg
        accuracy = saga_logistic_accuracy(encode(method.backbone, train_x), data.train_y,
                                          encode(method.backbone, test_x), data.test_y, seed)
        estimate = test_bound(method, test_x, cfg.bound, schedule.batch_size)
        out = {"probe_accuracy": accuracy, "test_bound": estimate}
        if cfg.mi_target is not None:
            out["test_objective"] = abs(estimate - cfg.mi_target)
        return out | (extra(method, step) if extra is not None else {})

    return evaluate


class EpochBatches:
    """The indices of batch ``position`` of a run: epoch after epoch, each in a random order
    fixed by (seed, epoch) alone (the last partial batch dropped), so a run resumed at any
    position draws what it would have drawn."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device) -> None:
        self.n, self.batch, self.seed, self.device = n, batch_size, seed, device
        self.per_epoch = n // batch_size
        if self.per_epoch == 0:
            raise UserError(f"batch {batch_size} is larger than the {n} training images; "
                            "use more images (--train-size)")
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.long)

    def __call__(self, position: int) -> torch.Tensor:
        epoch, i = divmod(position, self.per_epoch)
        if epoch != self._epoch:
            order_gen, _ = epoch_generators(self.seed, epoch + 1, self.device)
            self._epoch, self._order = epoch, torch.randperm(self.n, generator=order_gen).to(
                self.device)
        return self._order[i * self.batch:(i + 1) * self.batch]


def train_steps(store: Store, run_id: int, method: nn.Module, cfg: RunConfig, data: Halves,
                schedule: Schedule, evaluate: Evaluate, run_dir: Path, echo: Echo, *,
                noise_std: float = 0.0, state: dict[str, Any] | None = None,
                uid: str | None = None) -> None:
    """Train ``method`` (an ``infomax`` method on the halves) for ``schedule.steps`` steps,
    evaluating and checkpointing every ``schedule.eval_every``; from ``state`` (a checkpoint of
    this run) if given. The objective is the method's (−Î, or |Î − t|). Each checkpoint
    carries the run's ``uid`` and is recorded (sha256) in its row before it takes its name."""
    device = data.train_x.device
    optimizer = build_optimizer(method, cfg.optimizer, schedule.batch_size)
    batches = EpochBatches(data.train_x.shape[0], schedule.batch_size, cfg.train.seed, device)
    noise_gen = torch.Generator(device=device).manual_seed(cfg.train.seed * 1_000_003 + 17)
    step, loss_sum, loss_count = 0, 0.0, 0
    if state is not None:
        method.load_state_dict(state["method"])
        optimizer.load_state_dict(state["optimizer"])
        step, loss_sum, loss_count = state["step"], state["loss_sum"], state["loss_count"]
        noise_gen.set_state(state["noise_rng"])

    def commit(path: Path, sha256: str, size: int) -> None:
        store.record_artifact(run_id, CHECKPOINT_ARTIFACT, path, sha256, size, replace=True)

    def checkpoint() -> None:
        save_checkpoint(run_dir / CHECKPOINT_NAME, {
            "run_id": run_id, "run_uid": uid, "method": method.state_dict(),
            "optimizer": optimizer.state_dict(), "step": step, "loss_sum": loss_sum,
            "loss_count": loss_count, "noise_rng": noise_gen.get_state()}, commit=commit)

    def evaluation() -> None:
        nonlocal loss_sum, loss_count
        metrics = timed_evaluation(evaluate, method, step)
        if loss_count:
            if not math.isfinite(loss_sum):
                raise RunFailure(f"{NON_FINITE} between steps {step - loss_count} and {step}")
            metrics["train_objective"] = loss_sum / loss_count
        log_evaluation(store, run_id, schedule, step, metrics, echo)
        loss_sum, loss_count = 0.0, 0
        checkpoint()

    method.train()
    if state is None:
        evaluation()
    with StopSignals() as stop, stop.deferring():
        while step < schedule.steps:
            x = data.train_x[batches(step)]
            if noise_std > 0:
                x = with_shared_noise(x, noise_std, noise_gen)
            loss, _ = method.training_step([x, x])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum, loss_count = loss_sum + loss.item(), loss_count + 1
            if step % schedule.eval_every == 0:
                evaluation()
            elif stop.received is not None:
                checkpoint()
            raise_if_stopped(stop, step)


def timed_evaluation(evaluate: Evaluate, module: nn.Module, step: int) -> dict[str, float]:
    """``evaluate`` in eval mode (and back to train mode), with its duration as ``eval_s``."""
    start = time.perf_counter()
    module.eval()
    metrics = evaluate(module, step)
    module.train()
    return metrics | {"eval_s": time.perf_counter() - start}


def log_evaluation(store: Store, run_id: int, schedule: Schedule, step: int,
                   metrics: dict[str, float], echo: Echo) -> None:
    """Store an evaluation (``epoch`` = its round) and print it."""
    store.log_metrics(run_id, metrics, step=step, epoch=schedule.rounds(step))
    echo(f"  run {run_id} step {step:>6}/{schedule.steps}: "
         + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))


def raise_if_stopped(stop: StopSignals, step: int) -> None:
    """After a SIGINT/SIGTERM (the checkpoint written): stop the run as KILLED."""
    if stop.received is not None:
        raise RunKilled(f"interrupted by {stop.received.name} at step {step}; checkpoint saved",
                        stop.received.value)


# Every cell: the paper's constant learning rate (no warm-up, no decay).
CONSTANT_LR = ("optimizer.warmup_epochs=0", "optimizer.min_lr_ratio=1.0")


def cell_config(dataset: str, seed: int, overrides: tuple[str, ...] | list[str]) -> RunConfig:
    """The ``infomax`` config of a cell (a bad key is a one-line ConfigError)."""
    return resolve_config("infomax", flags={"data.dataset": dataset, "train.seed": seed},
                          overrides=[*CONSTANT_LR, *overrides])


@dataclasses.dataclass(frozen=True)
class Cell:
    """One configuration of a reproduction: ``infomax`` keys on top of the method's defaults (the
    paper's Adam, lr 10⁻⁴, batch 128), a seed, and what the protocol adds."""

    label: str  # for the log: "bilinear critic, NWJ, seed 1"
    overrides: tuple[str, ...]
    seed: int
    noise_std: float = 0.0  # Gaussian noise shared by the two halves (the skip-MLP experiment)

    def config(self, dataset: str) -> RunConfig:
        return cell_config(dataset, self.seed, self.overrides)

    def identity(self, reproduction: str, schedule: Schedule, dataset: str) -> dict[str, Any]:
        """What finds the cell's run again: what was asked for, not the resolved config (a new
        config key elsewhere in sslbench must not orphan a half-finished grid)."""
        return {"reproduction": reproduction, "dataset": dataset, "seed": self.seed,
                "overrides": list(self.overrides), "noise_std": self.noise_std,
                "protocol": dataclasses.asdict(schedule)}


@dataclasses.dataclass(frozen=True)
class Child:
    """A child run about to train: new, or taken up again from its checkpoint (``state``)."""

    run_id: int
    run_dir: Path
    state: dict[str, Any] | None
    uid: str


def open_child(store: Store, parent_id: int, identity: dict[str, Any], label: str,
               config: dict[str, Any], s: ReproSettings, device: torch.device,
               rounds: Callable[[int], int], echo: Echo) -> Child | RunRecord:
    """The child of ``parent_id`` whose ``cell`` is ``identity``: its record if it finished
    (nothing to do), else the run to train — a stopped one made RUNNING again from its checkpoint
    (its metric rows after the checkpoint's round, ``rounds(step)``, removed), or a new one with
    ``config`` (its method, dataset, seed, backbone from there)."""
    found = [r for r in store.children(parent_id) if r.config.get("cell") == identity]
    if found and _finished(found[-1]):
        echo(f"run {found[-1].id}: {label}: {found[-1].status}, skipped")
        return store.get_run(found[-1].id)  # with its metrics, for the summary
    if found and found[-1].status == "RUNNING":
        raise UserError(f"run {found[-1].id} ({label}) is running in another process "
                        f"(pid {found[-1].pid} on {found[-1].host}); wait for it to finish")
    state = None
    if found:
        run = store.get_run(found[-1].id)  # with its artifacts
        recorded = next((a for a in run.artifacts if a.name == CHECKPOINT_ARTIFACT), None)
        if recorded is not None:  # verified: the file the run recorded, and the run's own
            state = load_checkpoint(recorded.path, sha256=recorded.sha256, owner=run.uid)
        store.resume_run(run.id, epochs_done=rounds(state["step"]) if state is not None else -1)
        echo(f"run {run.id}: {label}: continuing at step {state['step'] if state else 0}")
        run_id = run.id
    else:
        run_id = store.create_run(kind="reproduce", method=config["method"]["name"],
                                  dataset=config["data"]["dataset"],
                                  config={"cell": identity, **config}, seed=identity["seed"],
                                  backbone=config["method"].get("encoder"), parent_id=parent_id,
                                  device=device_label(device),
                                  runs_root=runs_root(s.output_dir, store.url))
        echo(f"run {run_id}: {label}")
    run = store.get_run(run_id)
    if run.run_dir is None:  # a run recorded before run folders were named by uid
        store.set_run_dir(run_id, runs_root(s.output_dir, store.url) / run.uid)
        run = store.get_run(run_id)
    run_dir = Path(run.run_dir or "")
    run_dir.mkdir(parents=True, exist_ok=True)
    return Child(run_id, run_dir, state, run.uid)


def run_cell(store: Store, parent_id: int, reproduction: str, cell: Cell, data: Halves,
             schedule: Schedule, s: ReproSettings, echo: Echo,
             extra: Evaluate | None = None) -> RunRecord:
    """Train and evaluate ``cell`` as a child run of ``parent_id`` — or skip it if it finished,
    or continue it from its checkpoint if it was stopped; the run as stored afterwards. ``extra``
    adds its metrics to every evaluation."""
    cfg = cell.config(data.name)
    device = data.train_x.device
    child = open_child(store, parent_id, cell.identity(reproduction, schedule, data.name),
                       cell.label, cfg.to_dict(), s, device, schedule.rounds, echo)
    if isinstance(child, RunRecord):
        return child
    try:
        with recording(store, child.run_id):
            seed_everything(cell.seed)
            method = build_method(cfg, data.train_x.shape[1]).to(device)
            evaluate = probe_and_bound(data, schedule, cell.seed, cell.noise_std, extra)
            train_steps(store, child.run_id, method, cfg, data, schedule, evaluate,
                        child.run_dir, echo, noise_std=cell.noise_std, state=child.state,
                        uid=child.uid)
    except RunFailure as exc:
        if NON_FINITE not in str(exc):
            raise
        echo(f"{exc} (FAILED; the other cells go on)")
    return store.get_run(child.run_id)


def _finished(run: RunRecord) -> bool:
    return run.status == "COMPLETED" or (
        run.status == "FAILED" and NON_FINITE in (run.failure_reason or ""))

