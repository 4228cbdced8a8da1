"""The training loop of every method, readable top to bottom.

Data stays on the device as uint8 tensors (or is streamed from prepared shards:
:mod:`sslbench.train.batches`); each step takes a batch, makes its views with the batched
augmentation (two, plus the small crops of multi-crop), calls the method's
``training_step``, steps the optimizer and the LR schedule, and lets the method update its own
state (EMA target, ...). The run lasts its epochs or its compute budget
(:mod:`sslbench.train.budget`), which may end the last epoch part way. Nothing is synchronised
with the host inside the step except every ``log_every`` steps. Checkpoints and resuming are in
:mod:`sslbench.train.checkpoint`; signals in :mod:`sslbench.train.interrupt`.

In a distributed run (``sslbench.distributed``) the same loop runs on every rank: each takes
its part of every global batch, the step goes through DistributedDataParallel, and only rank 0
saves checkpoints and gets the epoch hook.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslbench.config import RunConfig
from sslbench.data import ImageDataset
from sslbench.data.augment import pretraining_augment
from sslbench.distributed import collectives
from sslbench.distributed.ddp import prepare, release
from sslbench.errors import RunFailure, RunKilled
from sslbench.train.batches import batch_source
from sslbench.train.budget import WallClockPlan, fixed_total, max_warmup_share, synchronize
from sslbench.train.checkpoint import (
    CHECKPOINT_NAME,
    FORMAT,
    CheckpointOwner,
    Position,
    capture_rng,
    epoch_generators,
    position_of,
    restore_rng,
    save_checkpoint,
)
from sslbench.train.flops import count_without_side_effects
from sslbench.train.interrupt import StopSignals
from sslbench.train.optim import (
    WarmupCosine,
    build_optimizer,
    build_scheduler,
    planned_schedule,
)
from sslbench.train.progress import TrainProgress

EpochHook = Callable[[int, int, dict[str, float]], None]  # (epoch, global step, metrics)
StepHook = Callable[[int], None]  # (global step), after the optimizer step
CheckpointHook = Callable[[int, Path, float], None]  # (epoch, checkpoint file, epoch loss)
# (uint8 batch, generator, view 1, 2, ...) -> float view; BatchAugment by default, another view
# source in the benchmarks (sslbench.bench: views prepared in advance, a DataLoader)
ViewMaker = Callable[[torch.Tensor, torch.Generator, int], torch.Tensor]


@dataclass
class PretrainResult:
    epochs: int  # the last epoch trained (a budget may end it part way)
    steps: int
    final_loss: float
    seconds: float  # the whole loop, epoch-end work (monitor, checkpoints) included
    images_per_s: float
    checkpoint: Path
    train_s: float  # the training steps alone: what a wall-clock budget counts
    flops_per_image: float  # of a training step, forward and backward (sslbench.train.flops)


def pretrain(
    cfg: RunConfig,
    dataset: ImageDataset,
    method: nn.Module,
    device: torch.device,
    checkpoint_dir: Path,
    on_epoch_end: EpochHook | None = None,
    show_progress: bool = True,
    augment: ViewMaker | None = None,
    on_step_end: StepHook | None = None,
    resume_from: dict[str, Any] | None = None,
    stop: StopSignals | None = None,
    owner: CheckpointOwner | None = None,
    on_checkpoint: CheckpointHook | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> PretrainResult:
    """Train ``method`` on the train split of ``dataset``; a checkpoint after every epoch.

    The run lasts ``train.epochs`` or its compute budget (:mod:`sslbench.train.budget`), with the
    schedules planned to end there; ``clock`` is what a wall-clock budget is timed with.
    ``augment`` replaces the configured :class:`BatchAugment` (the benchmarks time the same loop
    with other view sources); ``on_step_end`` is called after every optimizer step.
    ``resume_from``: a checkpoint of this run to continue from (see
    :mod:`sslbench.train.checkpoint`); the result is the same as if training had never stopped.
    ``stop``: on SIGINT/SIGTERM, finish the current step, save a checkpoint, raise ``RunKilled``
    (in a distributed run the ranks agree on the step at the next one that syncs anyway, and
    the checkpoint of the last epoch is the one kept: each rank's augmentation stream is its own).
    ``owner``: the run the checkpoints belong to (its uid goes into them; each is committed
    through it before it replaces the previous one).
    ``train.checkpoint_every`` steps, a mid-epoch checkpoint too (a run killed by SIGKILL resumes
    from the last one; single process only, for the same reason).
    ``on_checkpoint``: called on rank 0 after each epoch's checkpoint is written (see
    :mod:`sslbench.train.retention`).
    """
    t = cfg.train
    batch = t.batch_size
    source = batch_source(cfg, dataset, device)
    steps_per_epoch = source.steps_per_epoch
    local_batch = batch // collectives.world_size()  # this rank's part of the global batch

    on_cuda = device.type == "cuda"
    use_cl = t.channels_last  # oneDNN's faster path on the CPU too (1.25-1.3x a step here)
    memory_format = torch.channels_last if use_cl else torch.contiguous_format
    method.to(device, memory_format=memory_format).train()
    configured = pretraining_augment(cfg.augment, dataset.info)
    augment = augment if augment is not None else configured
    num_views = cfg.augment.num_views
    sample = dataset.pretrain_images[:min(local_batch, FLOP_COUNT_IMAGES)].to(device)
    flops_per_image = _count_flops(method, sample, configured, num_views, memory_format, t.seed)
    training_step = prepare(method, device, t.sync_batchnorm)
    optimizer, scheduler = optimization(cfg, method, steps_per_epoch, flops_per_image * batch)
    warmup_share = max_warmup_share(t)
    schedule: WarmupCosine = planned_schedule(scheduler)
    if t.compile:  # the (DDP-wrapped) step, compiled with the method's modules inside
        training_step = torch.compile(training_step)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if on_cuda and t.amp
                else contextlib.nullcontext())
    params = [p for p in method.parameters() if p.requires_grad]

    checkpoint_path = checkpoint_dir / CHECKPOINT_NAME
    at, train_s = Position(), 0.0
    if resume_from is not None:
        at = _restore(resume_from, method, optimizer, scheduler, device)  # and the planned total
        source.check_position(resume_from.get("stream"))
        train_s = float(resume_from.get("train_s", 0.0))
    plan = (WallClockPlan(t.budget_s, t.plan_steps, at.step, device)
            if t.budget_s is not None and not schedule.planned else None)

    def snapshot(position: Position, spent_s: float, **mid_epoch: Any) -> None:
        if not collectives.is_main():  # rank 0 writes; the unwrapped method loads at any size
            return
        save_checkpoint(checkpoint_path, {
            "format": FORMAT, "method": method.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "epoch": position.epochs_done,
            "batch": position.batches_done, "step": position.step, "rng": capture_rng(device),
            "world_size": collectives.world_size(), "train_s": spent_s,
            "run_uid": owner and owner.uid, "stream": source.position(position.batches_done),
            **mid_epoch,
        }, commit=owner and owner.commit)

    step, final_loss, start = at.step, float("nan"), clock()
    epoch, unfinished = at.epochs_done, at.batches_done > 0  # an epoch stopped part way
    with (TrainProgress(_planned(schedule), steps_per_epoch, enabled=show_progress) as progress,
          stop.deferring() if stop is not None else contextlib.nullcontext(),
          contextlib.closing(source)):
        while step < schedule.total_steps or unfinished:
            epoch += 1
            epoch_start = clock()
            order_gen, aug_gen = epoch_generators(t.seed, epoch, device,
                                                  stream=collectives.rank())
            loss_sum = torch.zeros((), device=device)
            first_bad = torch.full((), -1, dtype=torch.long, device=device)
            method_logs: dict[str, float] = {}
            first_batch = 0
            if resume_from is not None and epoch == at.epochs_done + 1 and at.batches_done:
                first_batch = at.batches_done  # resuming mid-epoch (after SIGINT/SIGTERM)
                aug_gen.set_state(resume_from["aug_rng"])
                loss_sum += resume_from["loss_sum"].to(device)
                first_bad.copy_(resume_from["first_bad"])
                method_logs = dict(resume_from["method_logs"])
            batches = first_batch
            for i, x in enumerate(source.epoch(order_gen, first_batch), start=first_batch):
                views = [augment(x, aug_gen, view=v).contiguous(memory_format=memory_format)
                         for v in range(1, num_views + 1)]
                with autocast:
                    loss, _ = training_step(views)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.optimizer.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.optimizer.grad_clip)
                optimizer.step()
                if plan is not None and plan.measures(step + 1):
                    synchronize(device)
                    total = plan.total(step + 1, train_s + clock() - epoch_start)
                    if total is not None:  # the schedules end exactly at the budget from now on
                        schedule.fix_total(total, warmup_share)
                        progress.set_total(total)
                    if plan.finished:
                        plan = None
                scheduler.step()
                step += 1
                method_logs = method.on_train_step_end(step, schedule.total_steps)
                if on_step_end is not None:
                    on_step_end(step)

                # Record the first non-finite step without a host sync; checked every log_every.
                loss = loss.detach().float()
                first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss),
                                        torch.full_like(first_bad, step), first_bad)
                loss_sum += loss
                batches = i + 1
                last = batches == steps_per_epoch or step >= schedule.total_steps
                synced = step % t.log_every == 0 or last
                if synced:
                    _raise_if_non_finite(first_bad)
                    seen = (batches - first_batch) * batch / (clock() - epoch_start)
                    progress.update(step, epoch, (loss_sum / batches).item(), seen)
                stopping = stop is not None and _stop_now(stop, synced, device)
                if stopping or (t.checkpoint_every and step % t.checkpoint_every == 0
                                and not last and collectives.world_size() == 1):
                    _raise_if_non_finite(first_bad)
                    if stopping and collectives.world_size() > 1:  # the last epoch's is kept
                        raise _killed(stop.received, epoch, step, saved=False)
                    snapshot(Position(epoch - 1, i + 1, step), train_s + clock() - epoch_start,
                             aug_rng=aug_gen.get_state(), loss_sum=loss_sum.cpu(),
                             first_bad=first_bad.cpu(), method_logs=method_logs)
                if stopping:
                    raise _killed(stop.received, epoch, step)
                if last:
                    break

            seconds = clock() - epoch_start
            train_s += seconds
            unfinished = False
            final_loss = collectives.mean_over_ranks(loss_sum / batches).item()
            metrics = {"loss": final_loss, "lr": scheduler.get_last_lr()[0],
                       "img_per_s": (batches - first_batch) * batch / seconds,
                       "epoch_s": seconds, **method_logs}
            progress.epoch_end(epoch, _planned_epochs(schedule, steps_per_epoch), metrics, step)
            if on_epoch_end is not None:
                on_epoch_end(epoch, step, metrics)
            # After the epoch's metrics are stored: a resume redoes an epoch it has no record of.
            snapshot(Position(epoch, 0, step), train_s)
            if on_checkpoint is not None and collectives.is_main():
                on_checkpoint(epoch, checkpoint_path, final_loss)
            if stop is not None and _stop_now(stop, True, device):
                raise _killed(stop.received, epoch + 1, step)

    release(method)
    seconds = clock() - start
    done_steps = step - at.step
    return PretrainResult(epochs=epoch, steps=step, final_loss=final_loss, seconds=seconds,
                          images_per_s=done_steps * batch / seconds if done_steps else 0.0,
                          checkpoint=checkpoint_path, train_s=train_s,
                          flops_per_image=flops_per_image)


FLOP_COUNT_IMAGES = 64  # the batch a step's FLOPs are counted on, at most


def _count_flops(method: nn.Module, images: torch.Tensor, augment: ViewMaker, num_views: int,
                 memory_format: torch.memory_format, seed: int) -> float:
    """Training FLOPs per image, counted once on the configured views of ``images``, from a
    generator of their own (the epochs' augmentation streams are not touched)."""
    gen = torch.Generator(device=images.device).manual_seed(seed)
    views = [augment(images, gen, view=v).contiguous(memory_format=memory_format)
             for v in range(1, num_views + 1)]
    return count_without_side_effects(method, views)


def _planned(schedule: WarmupCosine) -> int | None:
    return int(schedule.total_steps) if schedule.planned else None


def _planned_epochs(schedule: WarmupCosine, steps_per_epoch: int) -> int | None:
    return None if not schedule.planned else math.ceil(schedule.total_steps / steps_per_epoch)


def optimization(cfg: RunConfig, method: nn.Module, steps_per_epoch: int,
                 flops_per_step: float | None = None
                 ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimizer and LR schedule of a run of ``cfg`` with ``steps_per_epoch`` optimizer
    steps per epoch, planned to end at its epochs or budget (what a checkpoint's states are
    loaded into; a checkpoint's schedule holds its planned total, so ``flops_per_step`` may be
    left out there even for a FLOP budget)."""
    t = cfg.train
    optimizer = build_optimizer(method, cfg.optimizer, t.batch_size)
    total = (None if t.budget_flops is not None and flops_per_step is None
             else fixed_total(t, steps_per_epoch, flops_per_step or 0.0))
    return optimizer, build_scheduler(optimizer, cfg.optimizer, total, steps_per_epoch,
                                      max_warmup_share(t))


def _restore(state: dict[str, Any], method: nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: torch.optim.lr_scheduler.LRScheduler, device: torch.device) -> Position:
    """Load a checkpoint into the freshly built training objects; where training stands."""
    method.load_state_dict(state["method"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rng(state["rng"], device)
    return position_of(state)


def _stop_now(stop: StopSignals, synced: bool, device: torch.device) -> bool:
    """Whether to stop after this step: at once after a signal in a single process; in a
    distributed run, when any rank got one, decided together at a step that syncs anyway."""
    if collectives.world_size() == 1:
        return stop.received is not None
    return synced and collectives.any_rank(stop.received is not None, device)


def _killed(sig: signal.Signals | None, epoch: int, step: int, saved: bool = True) -> RunKilled:
    sig = sig or signal.SIGTERM  # another rank's signal
    kept = ("checkpoint saved" if saved else f"the checkpoint of epoch {epoch - 1} is kept"
            if epoch > 1 else "no checkpoint yet")
    return RunKilled(f"interrupted by {sig.name} in epoch {epoch} at step {step}; {kept}",
                     sig.value)


def _raise_if_non_finite(first_bad: torch.Tensor) -> None:
    bad = int(first_bad.item())
    if bad >= 0:
        raise RunFailure(f"non-finite loss at step {bad}")
