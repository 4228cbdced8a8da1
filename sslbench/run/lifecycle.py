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
from sslbench.escape import redact
from sslbench.paths import writable_folder
from sslbench.store import Store
from sslbench.store.db import default_runs_root
from sslbench.train.checkpoint import CheckpointOwner

Echo = Callable[[str], None]
CHECKPOINT_ARTIFACT = "checkpoint"  # the artifact name of a pretrain run's checkpoint


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

    def checkpoint_owner(self) -> CheckpointOwner:
        """This run as the owner of its checkpoints: its uid, and each new checkpoint recorded
        (path and sha256, as the run's one ``checkpoint`` artifact) before it takes its name."""
        store, run_id = self.store, self.run_id

        def commit(path: Path, sha256: str, size: int) -> None:
            store.record_artifact(run_id, CHECKPOINT_ARTIFACT, path, sha256, size, replace=True)

        return CheckpointOwner(store.get_run(run_id).uid, commit)


def device_label(device: torch.device, world: int = 1) -> str:
    """``cpu``, ``cuda:NVIDIA H100 ...``; in a distributed run with the backend, ``cpu (gloo)``
    (the run's world size is recorded beside it: ``runs show`` prints ``cpu (gloo) x 2``)."""
    name = f"cuda:{torch.cuda.get_device_name(device)}" if device.type == "cuda" else "cpu"
    return name if world == 1 else f"{name} ({backend_for(device)})"


def create_run(store: Store, cfg: RunConfig, kind: str, device: torch.device, *,
               config: dict[str, Any] | None = None, world: int = 1,
               parent_id: int | None = None, sweep_id: str | None = None,
               trial_number: int | None = None, runs_root: Path | None = None) -> int:
    """Record a RUNNING run of ``kind`` described by ``cfg`` (its method, dataset, seed and
    backbone; ``config`` is stored instead of the full config when given); its id. With
    ``runs_root``, its folder is ``runs_root/<its uid>``."""
    return store.create_run(
        kind=kind, method=cfg.method_name, dataset=cfg.data.dataset,
        config=cfg.to_dict() if config is None else config, seed=cfg.train.seed,
        backbone=cfg.model.backbone, device=device_label(device, world), world_size=world,
        parent_id=parent_id, sweep_id=sweep_id, trial_number=trial_number, runs_root=runs_root,
    )


def resume_hint(store: Store, run_id: int) -> str:
    """What continues a stopped run: ``sslbench resume`` for a pretrain run with a checkpoint,
    the sweep for a trial, the same command again for anything else."""
    run = store.get_run(run_id)
    if run.kind == "trial":
        return "run the same `sslbench sweep` command again to finish the study"
    if run.kind != "pretrain":
        return ("nothing to resume: evaluate the pretrain run again" if run.parent_id
                else "nothing to resume: run the command again")
    if any(a.name == CHECKPOINT_ARTIFACT for a in run.artifacts):
        return f"`sslbench resume {run_id}` continues it"
    return "it had no checkpoint yet: start it again with `sslbench pretrain`"


@contextlib.contextmanager
def recording(store: Store, run_id: int) -> Iterator[None]:
    """Keep the run's heartbeat while the body runs; mark the run FAILED (with the reason) or
    KILLED (saying what continues it) if the body does not finish, COMPLETED if it does.

    Each mark is conditional on this process still holding the run (see ``Store``): a process
    whose run was reaped or taken over changes nothing on its way out."""
    try:
        with store.beating(run_id):
            yield
    except RunKilled as exc:
        store.finish_run(run_id, "KILLED",
                         failure_reason=f"{redact(str(exc))}; {resume_hint(store, run_id)}")
        raise RunKilled(f"run {run_id}: {exc}", exc.exit_code - 128) from None
    except KeyboardInterrupt:
        store.finish_run(run_id, "KILLED",
                         failure_reason=f"interrupted (Ctrl-C); {resume_hint(store, run_id)}")
        raise
    except RunPruned as exc:
        store.finish_run(run_id, "PRUNED", failure_reason=redact(str(exc)))
        raise
    except torch.cuda.OutOfMemoryError as exc:
        reason = f"out of GPU memory: {str(exc).splitlines()[0]}"
        store.finish_run(run_id, "FAILED", failure_reason=reason)
        raise RunFailure(f"run {run_id}: {reason}") from None
    except (RunFailure, UserError) as exc:
        store.finish_run(run_id, "FAILED", failure_reason=redact(str(exc)))
        raise RunFailure(f"run {run_id}: {exc}") from None
    except BaseException as exc:
        store.finish_run(run_id, "FAILED", failure_reason=redact(f"{type(exc).__name__}: {exc}"))
        raise
    else:
        store.finish_run(run_id, "COMPLETED")


def runs_root(output_dir: str | None, db_url: str) -> Path:
    """Where run folders go: ``train.output_dir`` if set, else the folder that belongs to the
    database (``results.sqlite`` → ``results.runs/`` beside it); created and writable, or a
    UserError."""
    root = (Path(output_dir).expanduser() if output_dir else default_runs_root(db_url)).resolve()
    return writable_folder(root, "output dir", "pass train.output_dir=DIR with a writable folder")
