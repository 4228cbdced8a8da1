"""A run's row in the store, from creation to its final status.

Once a run row exists, every way out of it sets its final status: COMPLETED, FAILED with the
reason, KILLED on Ctrl-C or SIGTERM (after a checkpoint), or PRUNED for a sweep trial stopped
early; while it runs, a background thread keeps its heartbeat fresh, and a process that dies
without a word (kill -9, power loss) is marked KILLED by the next command that opens the store.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from sslbench.config import RunConfig
from sslbench.data import ImageDataset
from sslbench.distributed.launch import backend_for
from sslbench.errors import RunFailure, RunKilled, RunPruned, UserError
from sslbench.paths import writable_folder
from sslbench.store import Store

Echo = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What every step of a run needs: where it is recorded, what it is, what it runs on."""

    store: Store
    run_id: int
    cfg: RunConfig
    dataset: ImageDataset
    device: torch.device
    echo: Echo = print
    # an evaluation on another dataset than the pretraining's: what was adapted (data/transfer)
    transfer: dict[str, Any] | None = None

    def create_child(self, kind: str, config: dict[str, Any]) -> int:
        """Record an evaluation of this run (RUNNING) as its child; the child's id."""
        if self.transfer is not None:
            config = {**config, "transfer": self.transfer}
        return create_run(self.store, self.cfg, kind, self.device, config=config,
                          parent_id=self.run_id)


def device_label(device: torch.device, world: int = 1) -> str:
    """``cpu``, ``cuda:NVIDIA H100 ...``; in a distributed run with the backend, ``cpu (gloo)``
    (the run's world size is recorded beside it: ``runs show`` prints ``cpu (gloo) x 2``)."""
    name = f"cuda:{torch.cuda.get_device_name(device)}" if device.type == "cuda" else "cpu"
    return name if world == 1 else f"{name} ({backend_for(device)})"


def create_run(store: Store, cfg: RunConfig, kind: str, device: torch.device, *,
               config: dict[str, Any] | None = None, world: int = 1,
               parent_id: int | None = None, sweep_id: str | None = None,
               trial_number: int | None = None) -> int:
    """Record a RUNNING run of ``kind`` described by ``cfg`` (its method, dataset, seed and
    backbone; ``config`` is stored instead of the full config when given); its id."""
    return store.create_run(
        kind=kind, method=cfg.method_name, dataset=cfg.data.dataset,
        config=cfg.to_dict() if config is None else config, seed=cfg.train.seed,
        backbone=cfg.model.backbone, device=device_label(device, world), world_size=world,
        parent_id=parent_id, sweep_id=sweep_id, trial_number=trial_number,
    )


@contextlib.contextmanager
def recording(store: Store, run_id: int) -> Iterator[None]:
    """Keep the run's heartbeat while the body runs; mark the run FAILED (with the reason) or
    KILLED if the body does not finish, COMPLETED if it does."""
    try:
        with store.beating(run_id):
            yield
    except RunKilled as exc:
        store.finish_run(run_id, "KILLED", failure_reason=f"{exc}; `sslbench resume {run_id}` "
                                                          "continues it")
        raise RunKilled(f"run {run_id}: {exc}", exc.exit_code - 128) from None
    except KeyboardInterrupt:
        store.finish_run(run_id, "KILLED", failure_reason="interrupted (Ctrl-C)")
        raise
    except RunPruned as exc:
        store.finish_run(run_id, "PRUNED", failure_reason=str(exc))
        raise
    except torch.cuda.OutOfMemoryError as exc:
        reason = f"out of GPU memory: {str(exc).splitlines()[0]}"
        store.finish_run(run_id, "FAILED", failure_reason=reason)
        raise RunFailure(f"run {run_id}: {reason}") from None
    except (RunFailure, UserError) as exc:
        store.finish_run(run_id, "FAILED", failure_reason=str(exc))
        raise RunFailure(f"run {run_id}: {exc}") from None
    except BaseException as exc:
        store.finish_run(run_id, "FAILED", failure_reason=f"{type(exc).__name__}: {exc}")
        raise
    else:
        store.finish_run(run_id, "COMPLETED")


def check_output_dir(path: str) -> Path:
    """The checkpoint root ``train.output_dir``, created and writable, or a UserError."""
    return writable_folder(Path(path).expanduser().resolve(), "output dir",
                           "pass train.output_dir=DIR with a writable folder")
