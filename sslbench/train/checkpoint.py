"""Checkpoints of a pretraining run: what is saved, how it is written, and how it is read back.

A checkpoint holds everything the loop needs to continue as if it had never stopped: the method
(its weights, buffers such as MoCo's or SwAV's queue and the EMA target, and host-side counters
through ``get_extra_state``), the optimizer, the LR schedule, every global random generator, and
the position in the data. The data order and the augmentation stream of an epoch are derived from
``(seed, epoch)`` (:func:`epoch_generators`), so a checkpoint taken at an epoch boundary needs no
data-loader state at all; one taken mid-epoch (on SIGINT/SIGTERM) also keeps the augmentation
generator's state and the epoch's running loss. Resuming is therefore bit-exact on the CPU.

Files are written atomically (a temporary file, then a rename) and read with
``torch.load(weights_only=True)``: a checkpoint can hold tensors and plain data only.

A checkpoint belongs to one run: it carries the run's uid, and its sha256 is recorded in the
run's row before the file takes its name (``commit``), so the database is the point where a new
checkpoint counts. :func:`load_checkpoint` verifies the checksum before reading a byte of it as
a checkpoint and the uid after: a file changed by hand, or written by another run (of this
database or another), is never loaded. A crash between the commit and the rename leaves the
recorded file as ``checkpoint.pt.tmp``, which the next load completes.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sslbench.errors import RunFailure, UserError
from sslbench.files import file_sha256, os_reason

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = 3  # 1: weights and position only (no RNG): not resumable; 2: no owner uid
RESUME_KEYS = ("method", "optimizer", "scheduler", "epoch", "batch", "step", "rng")
MID_EPOCH_KEYS = ("aug_rng", "loss_sum", "first_bad", "method_logs")
Commit = Callable[[Path, str, int], None]  # (final path, sha256, size) before the rename


@dataclass(frozen=True)
class CheckpointOwner:
    """The run a checkpoint belongs to: its uid (written into the file) and how a new
    checkpoint is recorded before it replaces the old one (``commit``)."""

    uid: str
    commit: Commit | None = None


@dataclass(frozen=True)
class Position:
    """Where training stands: ``epochs_done`` complete epochs, then ``batches_done`` batches of
    epoch ``epochs_done + 1``; ``step`` optimizer steps in all."""

    epochs_done: int = 0
    batches_done: int = 0
    step: int = 0


def epoch_generators(seed: int, epoch: int, device: torch.device, stream: int = 0
                     ) -> tuple[torch.Generator, torch.Generator]:
    """The data-order and augmentation generators of ``epoch`` (1-based), from the seed alone.

    Separate streams: changing the augmentation cannot change the order, and no epoch depends on
    how many numbers an earlier one drew. ``stream`` (a distributed run's rank) gives each rank
    augmentations of its own; the data order is the same on every rank (each takes its shard).
    """
    base = seed * 1_000_003 + epoch * 7919
    order = torch.Generator().manual_seed(base)
    augment = torch.Generator(device=device).manual_seed(base + 1 + 104_729 * stream)
    return order, augment


def capture_rng(device: torch.device) -> dict[str, Any]:
    """The state of python's, numpy's and torch's global generators, as plain data and tensors
    (numpy's key array becomes a tensor: ``weights_only`` loading accepts no numpy objects)."""
    import numpy as np

    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                  float(cached)),
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    """Put back the generators saved by :func:`capture_rng`."""
    import numpy as np

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _tmp(path: Path) -> Path:
    return path.with_suffix(path.suffix + ".tmp")


def save_checkpoint(path: Path, state: dict[str, Any], commit: Commit | None = None) -> None:
    """Write atomically: a crash or a full disk while saving leaves the previous checkpoint whole.
    ``commit`` records the new file's sha256 (in the run's row) before it takes its name.

    A failed write is a :class:`RunFailure` naming the file and the reason (e.g. no space left).
    """
    tmp = _tmp(path)
    try:
        torch.save(state, tmp)
        if commit is not None:
            commit(path, file_sha256(tmp), tmp.stat().st_size)
        os.replace(tmp, path)
    except BaseException as exc:  # a second Ctrl-C too: never leave the temporary file behind
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            reason = os_reason(exc)
        elif isinstance(exc, RuntimeError):  # torch wraps the OS error of its C++ writer
            reason = str(exc).splitlines()[0]
        else:
            raise
        raise RunFailure(f"cannot write checkpoint {str(path)!r}: {reason}") from None


def load_checkpoint(path: str | Path, *, sha256: str | None = None,
                    owner: str | None = None) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors and plain data only).

    ``sha256``: the checksum the run recorded; a file that differs is refused unread (a
    ``.tmp`` beside it with that checksum is the recorded one, renamed in place first).
    ``owner``: the uid of the run it must belong to (files of older sslbench carry none: the
    checksum alone vouches for them).
    """
    p = Path(path)
    if sha256 is not None:
        _verify(p, sha256)
    elif not p.is_file():
        raise UserError(f"checkpoint {str(p)!r} does not exist (was the run's output dir moved?)")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated / corrupt / not a checkpoint / a pickled object
        raise UserError(f"checkpoint {str(p)!r} cannot be read ({type(exc).__name__}); "
                        "re-run the pretraining") from None
    if not isinstance(state, dict) or not isinstance(state.get("method"), dict):
        raise UserError(f"checkpoint {str(p)!r} is not an sslbench checkpoint")
    written_by = state.get("run_uid")
    if owner is not None and written_by is not None and written_by != owner:
        raise UserError(f"checkpoint {str(p)!r} belongs to run {written_by}, not to run {owner}; "
                        "nothing was loaded")
    return state


def _verify(path: Path, sha256: str) -> None:
    """The file at ``path`` is the one recorded with ``sha256``, or a UserError (unread)."""
    tmp = _tmp(path)
    if tmp.is_file() and file_sha256(tmp) == sha256:
        os.replace(tmp, path)  # committed, then the process died before the rename
    try:
        actual = file_sha256(path)
    except FileNotFoundError:
        raise UserError(f"checkpoint {str(path)!r} does not exist (was the run's output dir "
                        "moved?)") from None
    except OSError as exc:
        raise UserError(f"checkpoint {str(path)!r} cannot be read ({os_reason(exc)})") from None
    if actual != sha256:
        raise UserError(f"checkpoint {str(path)!r} is not the file its run recorded (sha256 "
                        f"{actual[:12]}…, recorded {sha256[:12]}…): it was changed or replaced; "
                        "nothing was loaded")


def position_of(state: dict[str, Any]) -> Position:
    """The training position a checkpoint was taken at."""
    return Position(int(state["epoch"]), int(state.get("batch", 0)), int(state["step"]))


def check_resumable(state: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint that cannot continue a run exactly: written before format 2, or
    lacking what the loop restores."""
    if not isinstance(state.get("format", 1), int) or state.get("format", 1) < 2 \
            or "rng" not in state:
        raise UserError(f"checkpoint {str(path)!r} was written by an older sslbench without "
                        "random-generator states; it can be evaluated but not resumed")
    missing = [k for k in RESUME_KEYS if k not in state]
    if not missing and state["batch"]:
        missing = [k for k in MID_EPOCH_KEYS if k not in state]
    if missing:
        raise UserError(f"checkpoint {str(path)!r} lacks {', '.join(missing)}: it cannot "
                        "continue its run")


def check_fits(state: dict[str, Any], method: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LRScheduler, path: str | Path) -> None:
    """Load a resumable checkpoint into freshly built training objects, so that a checkpoint
    that does not fit the run (wrong shapes, another optimizer) is a UserError before the run is
    touched."""
    load_weights(method, state, path)
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        position_of(state)
    except _MISFIT as exc:
        raise _misfit(path, exc) from None


def load_weights(method: torch.nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """:func:`load_method_state`, with a checkpoint that does not fit the method (missing keys,
    wrong shapes) as a UserError."""
    try:
        load_method_state(method, state["method"])
    except _MISFIT as exc:
        raise _misfit(path, exc) from None


_MISFIT = (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError)


def _misfit(path: str | Path, exc: Exception) -> UserError:
    reason = " ".join(str(exc).split())[:160] or type(exc).__name__
    return UserError(f"checkpoint {str(path)!r} does not fit its run ({reason}); nothing was "
                     "changed")


def load_method_state(method: torch.nn.Module, state: dict[str, Any]) -> None:
    """Load a checkpoint's method weights strictly; host-side counters (``_extra_state``) that a
    checkpoint from before they were saved lacks keep the fresh method's values."""
    fresh = {k: v for k, v in method.state_dict().items() if k.endswith("_extra_state")}
    method.load_state_dict({**fresh, **state})
