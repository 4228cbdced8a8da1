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
"""

from __future__ import annotations

import errno
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sslbench.errors import RunFailure, UserError

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = 2  # 1: weights and position only (no RNG): not resumable


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


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash or a full disk while saving leaves the previous checkpoint whole.

    A failed write is a :class:`RunFailure` naming the file and the reason (e.g. no space left).
    """
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException as exc:  # a second Ctrl-C too: never leave the temporary file behind
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            reason = exc.strerror or errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        elif isinstance(exc, RuntimeError):  # torch wraps the OS error of its C++ writer
            reason = str(exc).splitlines()[0]
        else:
            raise
        raise RunFailure(f"cannot write checkpoint {str(path)!r}: {reason}") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors and plain data only)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint {str(p)!r} does not exist (was the run's output dir moved?)")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated / corrupt / not a checkpoint / a pickled object
        raise UserError(f"checkpoint {str(p)!r} cannot be read ({type(exc).__name__}); "
                        "re-run the pretraining") from None
    if not isinstance(state, dict) or "method" not in state:
        raise UserError(f"checkpoint {str(p)!r} is not an sslbench checkpoint")
    return state


def position_of(state: dict[str, Any]) -> Position:
    """The training position a checkpoint was taken at."""
    return Position(int(state["epoch"]), int(state.get("batch", 0)), int(state["step"]))


def check_resumable(state: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint that cannot continue a run exactly (written before format 2)."""
    if state.get("format", 1) < FORMAT or "rng" not in state:
        raise UserError(f"checkpoint {str(path)!r} was written by an older sslbench without "
                        "random-generator states; it can be evaluated but not resumed")


def load_method_state(method: torch.nn.Module, state: dict[str, Any]) -> None:
    """Load a checkpoint's method weights strictly; host-side counters (``_extra_state``) that a
    checkpoint from before they were saved lacks keep the fresh method's values."""
    fresh = {k: v for k, v in method.state_dict().items() if k.endswith("_extra_state")}
    method.load_state_dict({**fresh, **state})
