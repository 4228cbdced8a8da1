"""Starting the workers of a distributed run and reporting why one failed.

``--gpus N`` (NCCL, one process per GPU) or ``--procs N`` (CPU, gloo) starts the workers through
torch's elastic launcher (:func:`launch`, the engine behind ``torchrun``); several nodes rendezvous
at ``--master-addr:--master-port`` (static rendezvous, the node's rank from ``--node-rank``).
``torchrun -m sslbench pretrain ...`` works too: a process that finds the launcher's environment
(``RANK``, ``WORLD_SIZE``) is a worker (:func:`launched_worker`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from sslbench.distributed import DEFAULT_MASTER_PORT
from sslbench.errors import RunFailure, RunKilled, UserError

TIMEOUT = timedelta(minutes=30)  # a rank waits this long for the others (rank 0 evaluates alone)


def launched_worker() -> bool:
    """True in a process started by torchrun / the elastic launcher (its env names the world)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def worker_device(use_gpus: bool, local_rank: int) -> torch.device:
    """The device of a worker: GPU ``local_rank`` of its node, or the CPU."""
    return torch.device("cuda", local_rank) if use_gpus else torch.device("cpu")


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def init_worker(use_gpus: bool) -> torch.device:
    """Join the process group described by the launcher's environment; returns this worker's
    device. CPU workers of a node share its cores (``torch.set_num_threads``)."""
    local_rank = int(os.environ["LOCAL_RANK"])
    device = worker_device(use_gpus, local_rank)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"worker {local_rank} has no GPU: this node has "
                            f"{torch.cuda.device_count()}")
        torch.cuda.set_device(device)
    else:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if not dist.is_initialized():
        dist.init_process_group(backend_for(device), timeout=TIMEOUT,
                                device_id=device if device.type == "cuda" else None)
    return device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------
# Planning and running a launch


@dataclasses.dataclass(frozen=True)
class LaunchOptions:
    """Where the workers run: ``nnodes`` machines, this one being ``node_rank``, meeting at
    ``master_addr:master_port`` (node 0's address; ignored on one node)."""

    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = DEFAULT_MASTER_PORT


@dataclasses.dataclass(frozen=True)
class LaunchPlan:
    nproc_per_node: int
    use_gpus: bool
    options: LaunchOptions

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.options.nnodes


def plan_launch(gpus: int | None, procs: int | None, options: LaunchOptions,
                gpus_available: int) -> LaunchPlan | None:
    """How many workers per node and on what, or None for a plain single-process run.

    ``gpus`` N ≥ 1: N GPU workers per node (NCCL); ``procs`` N: N CPU workers (gloo); both at
    most 1 on one node: no launcher. Bad combinations are UserErrors (nothing is written)."""
    o = options
    if o.nnodes < 1 or not 0 <= o.node_rank < o.nnodes:
        raise UserError(f"--node-rank {o.node_rank} must be in [0, {o.nnodes}) with --nnodes "
                        f"{o.nnodes}")
    if not 0 < o.master_port < 65536:
        raise UserError(f"--master-port {o.master_port} is not a TCP port")
    if procs is not None and procs > 1 and gpus:
        raise UserError(f"--procs {procs} starts CPU workers and --gpus {gpus} GPU workers: "
                        f"choose one (--gpus {procs} for {procs} GPUs)")
    if gpus:
        if gpus > gpus_available:
            raise UserError(f"--gpus {gpus}: this machine has {gpus_available} CUDA GPU(s); "
                            f"use --gpus {gpus_available} or --procs N for CPU workers")
        nproc, use_gpus = gpus, True
    elif procs is not None and procs > 1:
        nproc, use_gpus = procs, False
    else:
        nproc, use_gpus = 1, gpus is None and gpus_available > 0
    if nproc * o.nnodes == 1:
        return None
    return LaunchPlan(nproc, use_gpus, options)


class WorkerFailure(RunFailure):
    """A worker of a distributed run failed: ``rank`` and the reason it gave (or its signal)."""

    def __init__(self, rank: int, reason: str) -> None:
        super().__init__(f"worker rank {rank} failed: {reason}")
        self.rank, self.reason = rank, reason


def record_failure(exc: BaseException) -> None:
    """In a worker: write why it fails to the launcher's error file (read by :func:`launch`),
    with a nanosecond time so that the first failure, not its echo on the other ranks (a
    closed connection), is the one reported."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    reason = str(exc) if isinstance(exc, UserError | RunFailure) else f"{type(exc).__name__}: {exc}"
    with open(path, "w") as fp:
        json.dump({"message": reason, "timestamp": int(time.time()), "time_ns": time.time_ns()},
                  fp)


def first_failure(failures: dict[int, Any]) -> WorkerFailure:
    """The root cause of a failed launch, from the launcher's ``ProcessFailure`` by global rank.

    The launcher reports the first worker it saw exit, which may be the echo of another's error
    (rank 0's "connection closed" after rank 1 raised). So: a reported worker killed by a signal
    (it left no reason, and it cannot be an echo); else the earliest reason that any worker of
    this node recorded (:func:`record_failure`, read from the error files beside the reported
    one); else the reported failure as the launcher describes it.
    """
    for rank_, f in sorted(failures.items()):
        if f.exitcode < 0:
            return WorkerFailure(rank_, str(f.message))
    recorded: list[tuple[int, int, str]] = []
    for rank_, f in failures.items():
        recorded += _recorded_reasons(f.error_file, rank_ - f.local_rank)
    if recorded:
        _, rank_, reason = min(recorded)
        return WorkerFailure(rank_, reason)
    rank_, f = min(failures.items())
    message = f.message.get("message", "") if isinstance(f.message, dict) else str(f.message)
    if not message or message.startswith("To enable traceback"):
        message = f"exit code {f.exitcode}"
    return WorkerFailure(rank_, message.strip().splitlines()[-1])


def _recorded_reasons(error_file: str, first_rank: int) -> list[tuple[int, int, str]]:
    """(time, global rank, reason) of every worker of a node that recorded why it failed; the
    launcher keeps one folder per local rank, ``.../<local rank>/error.json``."""
    from pathlib import Path

    if not os.path.isabs(error_file):  # "<N/A>": the reported worker left no file
        return []
    found = []
    for path in Path(error_file).parent.parent.glob("*/error.json"):
        try:
            data = json.loads(path.read_text())
            found.append((int(data["time_ns"]), first_rank + int(path.parent.name),
                          str(data["message"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not one of ours (e.g. written by torch's own handler)
    return found


def launch(entrypoint: Callable[..., Any], args: Sequence[Any], plan: LaunchPlan,
           run_name: str | None = None) -> dict[int, Any]:
    """Run ``entrypoint(*args)`` in ``plan.nproc_per_node`` worker processes on this node
    through torch's elastic agent (``torch.distributed.launcher.api``), no restarts; returns
    the workers' return values by global rank. A worker's failure stops the others and raises
    :class:`WorkerFailure`; a signal to the launcher is sent on to the workers (once: they left
    the terminal's process group, see :func:`sslbench.process.become_worker`), which stop
    together, and then raises :class:`RunKilled` with that signal."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    o = plan.options
    if o.nnodes == 1:  # as torchrun --standalone: a rendezvous store on a free local port
        rdzv = {"rdzv_backend": "c10d", "rdzv_endpoint": "127.0.0.1:0", "rdzv_configs": {}}
    else:
        rdzv = {"rdzv_backend": "static", "rdzv_endpoint": f"{o.master_addr}:{o.master_port}",
                "rdzv_configs": {"rank": o.node_rank}}
    config = LaunchConfig(min_nodes=o.nnodes, max_nodes=o.nnodes,
                          nproc_per_node=plan.nproc_per_node,
                          run_id=run_name or f"sslbench-{uuid.uuid4().hex[:8]}",
                          max_restarts=0, monitor_interval=0.1, start_method="spawn", **rdzv)
    # Without OMP_NUM_THREADS the agent sets it to 1 for the workers and says so; each CPU
    # worker sets its own share of the cores instead (init_worker). Only the workers see it.
    omp = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = omp or str(max(1, (os.cpu_count() or 1)
                                                   // plan.nproc_per_node))
    try:
        return elastic_launch(config, entrypoint)(*args)
    except ChildFailedError as exc:
        raise first_failure(exc.failures) from None
    except SignalException as exc:
        raise RunKilled(f"stopped by {exc.sigval.name}", exc.sigval.value) from None
    finally:
        if omp is None:
            del os.environ["OMP_NUM_THREADS"]
