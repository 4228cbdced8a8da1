"""The training loop of every method, readable top to bottom.

Data stays on the device as uint8 tensors; each step indexes a batch, makes two views with the
batched augmentation, calls the method's ``training_step``, steps the optimizer and the LR
schedule, and lets the method update its own state (EMA target, ...). Nothing is synchronised
with the host inside the step except every ``log_every`` steps.

In a distributed run (``sslbench.train.distributed``) the same loop runs on every rank: each takes
its part of every global batch, the step goes through DistributedDataParallel, and only rank 0
saves checkpoints and gets the epoch hook.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sslbench.config import RunConfig
from sslbench.data import ImageDataset
from sslbench.data.augment import BatchAugment
from sslbench.errors import RunFailure, UserError
from sslbench.train import distributed
from sslbench.train.optim import build_optimizer, build_scheduler
from sslbench.train.progress import TrainProgress

EpochHook = Callable[[int, int, dict[str, float]], None]  # (epoch, global step, metrics)
StepHook = Callable[[int], None]  # (global step), after the optimizer step
# (uint8 batch, generator, view 1 or 2) -> float view; BatchAugment by default, another view
# source in the benchmarks (sslbench.bench: views prepared in advance, a DataLoader)
ViewMaker = Callable[[torch.Tensor, torch.Generator, int], torch.Tensor]


@dataclass
class PretrainResult:
    epochs: int
    steps: int
    final_loss: float
    seconds: float
    images_per_s: float
    checkpoint: Path


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically: a crash while saving never leaves a truncated checkpoint behind."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors and plain data only)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint {str(p)!r} does not exist (was the run's output dir moved?)")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated / corrupt / not a checkpoint
        raise UserError(f"checkpoint {str(p)!r} cannot be read ({type(exc).__name__}); "
                        "re-run the pretraining") from None


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
) -> PretrainResult:
    """Train ``method`` on the train split of ``dataset``; a checkpoint after every epoch.

    ``augment`` replaces the configured :class:`BatchAugment` (the benchmarks time the same loop
    with other view sources); ``on_step_end`` is called after every optimizer step."""
    t = cfg.train
    images = dataset.pretrain_images.to(device)
    n, batch = images.shape[0], t.batch_size
    steps_per_epoch = n // batch  # the last partial batch is dropped, as usual for SSL
    if steps_per_epoch == 0:
        raise UserError(f"train.batch_size={batch} is larger than the {n} training images of "
                        f"{dataset.info.name}; use a smaller --batch-size")
    total_steps = t.epochs * steps_per_epoch
    local_batch = batch // distributed.world_size()  # this rank's part of the global batch

    on_cuda = device.type == "cuda"
    use_cl = on_cuda and t.channels_last
    memory_format = torch.channels_last if use_cl else torch.contiguous_format
    method.to(device, memory_format=memory_format).train()
    training_step = distributed.prepare(method, device, t.sync_batchnorm)
    optimizer = build_optimizer(method, cfg.optimizer, batch)
    scheduler = build_scheduler(optimizer, cfg.optimizer, total_steps, steps_per_epoch)
    if augment is None:
        augment = BatchAugment(cfg.augment, mean=dataset.info.mean, std=dataset.info.std,
                               out_size=dataset.info.image_size)
    if t.compile:  # the (DDP-wrapped) step, compiled with the method's modules inside
        training_step = torch.compile(training_step)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if on_cuda and t.amp
                else contextlib.nullcontext())
    # Separate streams: the data order and the augmentations are both fixed by the seed.
    order_gen = torch.Generator().manual_seed(t.seed)
    aug_gen = torch.Generator(device=device).manual_seed(distributed.rank_seed(t.seed + 1))
    params = [p for p in method.parameters() if p.requires_grad]

    checkpoint_path = checkpoint_dir / "checkpoint.pt"
    step, final_loss, start = 0, float("nan"), time.perf_counter()
    with TrainProgress(total_steps, steps_per_epoch, enabled=show_progress) as progress:
        for epoch in range(1, t.epochs + 1):
            epoch_start = time.perf_counter()
            order = distributed.shard(torch.randperm(n, generator=order_gen), batch).to(device)
            loss_sum = torch.zeros((), device=device)
            first_bad = torch.full((), -1, dtype=torch.long, device=device)
            method_logs: dict[str, float] = {}
            for i in range(steps_per_epoch):
                x = images[order[i * local_batch:(i + 1) * local_batch]]
                view1 = augment(x, aug_gen, view=1).contiguous(memory_format=memory_format)
                view2 = augment(x, aug_gen, view=2).contiguous(memory_format=memory_format)
                with autocast:
                    loss, _ = training_step(view1, view2)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.optimizer.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.optimizer.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                method_logs = method.on_train_step_end(step, total_steps)
                if on_step_end is not None:
                    on_step_end(step)

                # Record the first non-finite step without a host sync; checked every log_every.
                loss = loss.detach().float()
                first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss),
                                        torch.full_like(first_bad, step), first_bad)
                loss_sum += loss
                if step % t.log_every == 0 or i == steps_per_epoch - 1:
                    _raise_if_non_finite(first_bad)
                    done = i + 1
                    seen = done * batch / (time.perf_counter() - epoch_start)
                    progress.update(step, epoch, (loss_sum / done).item(), seen)

            seconds = time.perf_counter() - epoch_start
            final_loss = distributed.mean_over_ranks(loss_sum / steps_per_epoch).item()
            metrics = {"loss": final_loss, "lr": scheduler.get_last_lr()[0],
                       "img_per_s": steps_per_epoch * batch / seconds, "epoch_s": seconds,
                       **method_logs}
            if distributed.is_main():  # the unwrapped method: it loads at any world size
                save_checkpoint(checkpoint_path, {
                    "method": method.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "epoch": epoch, "step": step,
                    "world_size": distributed.world_size(),
                })
            progress.epoch_end(epoch, t.epochs, metrics, step)
            if on_epoch_end is not None:
                on_epoch_end(epoch, step, metrics)

    distributed.release(method)
    seconds = time.perf_counter() - start
    return PretrainResult(epochs=t.epochs, steps=step, final_loss=final_loss, seconds=seconds,
                          images_per_s=total_steps * batch / seconds, checkpoint=checkpoint_path)


def _raise_if_non_finite(first_bad: torch.Tensor) -> None:
    bad = int(first_bad.item())
    if bad >= 0:
        raise RunFailure(f"non-finite loss at step {bad}")
