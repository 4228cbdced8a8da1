"""Distributed data-parallel training: launching the workers, the one gather, synchronised BN.

How a run is split across W workers (W = nodes × processes per node):

- **Launch.** ``--gpus N`` (NCCL, one process per GPU) or ``--procs N`` (CPU, gloo) starts the
  workers through torch's elastic launcher (:func:`launch`, the engine behind ``torchrun``);
  several nodes rendezvous at ``--master-addr:--master-port`` (static rendezvous, the node's rank
  from ``--node-rank``). ``torchrun -m sslbench pretrain ...`` works too: a process that finds
  the launcher's environment (``RANK``, ``WORLD_SIZE``) is a worker (:func:`launched_worker`).
- **Batch.** ``train.batch_size`` is the global batch B; each rank takes B / W images of it.
  Every epoch one permutation, the same on every rank (drawn from the seed), orders the training
  images; step i's global batch is its slice [iB, (i+1)B) and rank r takes the r-th contiguous
  part (:func:`shard`). The ranks' shards are disjoint and together they are exactly the batch
  a single process would take, so the learning-rate rule (``optimizer.lr_scaling``) depends on
  B only, never on W.
- **Gradients.** Every loss that needs the global batch gathers its embeddings with
  :func:`gather` (``torch.distributed.nn.functional.all_gather``: gradients flow back to the rank
  that made each row) and evaluates the loss of the global batch, identical on every rank.
  The gather's backward sums the W ranks' gradients and DistributedDataParallel averages them
  (divides by W): the step equals the single-process step on the concatenated batch. Do not
  multiply the loss by W as well (the "scaled twice" bug). Per-sample losses (BYOL, SimSiam)
  need no gather: the mean over ranks of the per-rank means is the global mean.
- **BatchNorm.** :func:`convert_batchnorm` swaps every BatchNorm for :class:`GlobalBatchNorm`,
  whose statistics are those of the global batch (the "global BN" of SimCLR, §2.2, and the
  SyncBatchNorm of the BYOL / Barlow Twins / VICReg / SwAV / SimSiam / MoCo v3 reference code).
  It works with gloo on the CPU, which ``torch.nn.SyncBatchNorm`` does not, so the same code is
  tested here and runs on GPUs; its state dict is a BatchNorm's.
- **State.** Only rank 0 writes to the store, prints and saves checkpoints (of the unwrapped
  method: they load at any world size).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from sslbench.errors import RunFailure, UserError

TIMEOUT = timedelta(minutes=30)  # a rank waits this long for the others (rank 0 evaluates alone)
# torch 2.14 marks torch.distributed.nn.functional.all_gather deprecated in favour of a private
# module (_functional_collectives); it is still the public all_gather with autograd, so keep it
# and do not print the notice at every run.
warnings.filterwarnings("ignore", category=FutureWarning,
                        message=r"torch\.distributed\.nn\.functional\.all_gather is deprecated")


# ---------------------------------------------------------------------------------------------
# Who am I


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes to the store, prints and checkpoints."""
    return rank() == 0


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
# The one gather


def gather(x: torch.Tensor) -> torch.Tensor:
    """``x`` [n, ...] of every rank concatenated in rank order → [W·n, ...], with gradients
    (``torch.distributed.nn.functional.all_gather``: each rank's rows get back the sum of every
    rank's gradient for them). The identity in a single process. Every rank must pass the same
    shape (equal shards, see :func:`shard`)."""
    if not is_distributed():
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


def mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """The mean of a (detached) tensor over the ranks, e.g. an epoch's loss for the log."""
    if not is_distributed():
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / world_size()


# ---------------------------------------------------------------------------------------------
# Data: this rank's part of every global batch


def shard(order: torch.Tensor, batch_size: int) -> torch.Tensor:
    """This rank's indices of an epoch's ``order`` (a permutation, identical on every rank):
    step i's global batch is ``order[i·B:(i+1)·B]`` (the last partial batch dropped) and rank r
    takes its r-th contiguous B/W part. Returned in step order, B/W per step."""
    w = world_size()
    steps = order.shape[0] // batch_size
    return order[:steps * batch_size].view(steps, w, batch_size // w)[:, rank()].reshape(-1)


def check_batch_split(batch_size: int, world: int) -> None:
    if batch_size % world:
        raise UserError(f"train.batch_size={batch_size} (the global batch) does not split into "
                        f"{world} workers; use a multiple of {world}")


# ---------------------------------------------------------------------------------------------
# BatchNorm over the global batch


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm (Ioffe & Szegedy 2015, Alg. 1) whose batch is the global one: in training mode
    in a distributed run, each rank's per-channel mean and biased variance are gathered (with
    gradients, :func:`gather`) and combined exactly; the W ranks hold equal shards of n values
    per channel, so with N = W·n

        μ = (1/W) Σ_r μ_r,   σ² = (1/W) Σ_r (σ_r² + (μ_r − μ)²),

    then x̂ = (x − μ) / sqrt(σ² + ε) and the running estimates take the unbiased σ²·N/(N − 1), as
    ``torch.nn.BatchNorm*d`` on the concatenated batch. Otherwise (one process, eval mode) it is
    that BatchNorm. Statistics in float32 whatever the autocast dtype; no host sync.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input.float()
        mean, var = x.mean(dim=dims), x.var(dim=dims, unbiased=False)
        stats = gather(torch.stack([mean, var])[None])  # [W, 2, C]
        g_mean = stats[:, 0].mean(dim=0)
        g_var = (stats[:, 1] + (stats[:, 0] - g_mean).pow(2)).mean(dim=0)
        if self.track_running_stats:
            n = x.numel() // x.shape[1] * world_size()
            self._update_running_stats(g_mean.detach(), g_var.detach(), n)
        y = (x - g_mean.view(shape)) * torch.rsqrt(g_var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        # momentum None: cumulative moving average, as torch's BatchNorm
        factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                  else self.momentum)
        unbiased = var * (n / max(n - 1, 1))
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm of ``module`` as a :class:`GlobalBatchNorm` sharing its parameters and
    buffers (the optimizer and the state dict keep working); returns the converted module."""
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        converted = GlobalBatchNorm(module.num_features, module.eps, module.momentum,
                                    module.affine, module.track_running_stats)
        _share_state(module, converted)
        return converted
    for name, child in module.named_children():
        module.add_module(name, convert_batchnorm(child))
    return module


def revert_batchnorm(module: nn.Module) -> nn.Module:
    """Undo :func:`convert_batchnorm`: plain ``BatchNorm1d/2d/3d`` again (by input rank)."""
    if isinstance(module, GlobalBatchNorm):
        dims = getattr(module, "_input_dims", 2)
        cls = {3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}.get(dims, nn.BatchNorm1d)
        plain = cls(module.num_features, module.eps, module.momentum, module.affine,
                    module.track_running_stats)
        _share_state(module, plain)
        return plain
    for name, child in module.named_children():
        module.add_module(name, revert_batchnorm(child))
    return module


def _share_state(src: _BatchNorm, dst: _BatchNorm) -> None:
    if src.affine:
        dst.weight, dst.bias = src.weight, src.bias
    if src.track_running_stats:
        dst.running_mean, dst.running_var = src.running_mean, src.running_var
        dst.num_batches_tracked = src.num_batches_tracked
    dst.train(src.training)
    # BatchNorm1d vs 2d only differ in the input check: remember which one to give back
    dst._input_dims = {nn.BatchNorm2d: 4, nn.BatchNorm3d: 5}.get(type(src), 3)


# ---------------------------------------------------------------------------------------------
# The model: one training step under DistributedDataParallel


class _TrainingStep(nn.Module):
    """DDP wraps ``forward``: this forward is the method's ``training_step``."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> Any:
        return self.method.training_step(view1, view2)


StepFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def prepare(method: nn.Module, device: torch.device, sync_batchnorm: bool = True) -> StepFn:
    """The function the loop calls for a training step: ``method.training_step`` in a single
    process; in a distributed run the method with its BatchNorms global (``sync_batchnorm``)
    inside DistributedDataParallel, which averages the gradients over the ranks.

    DDP broadcasts the parameters and buffers of rank 0 once here; ``forward_sync_buffers`` is off
    because every rank's buffers (BN statistics, queues fed by :func:`gather`, EMA targets) stay
    identical by construction. A method some of whose steps leave a parameter without gradient
    (SwAV's frozen prototypes) says so with ``ddp_find_unused_parameters = True``."""
    if not is_distributed():
        return method.training_step
    if sync_batchnorm:
        convert_batchnorm(method)
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    find_unused = bool(getattr(method, "ddp_find_unused_parameters", False))
    # torch 2.14 renamed broadcast_buffers (now deprecated) to forward_sync_buffers
    ddp_options = inspect.signature(DistributedDataParallel).parameters
    no_buffer_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in ddp_options
                      else {"broadcast_buffers": False})
    return DistributedDataParallel(_TrainingStep(method), device_ids=ids,
                                   find_unused_parameters=find_unused, **no_buffer_sync)


def release(method: nn.Module) -> None:
    """After training: the method's BatchNorms plain again, so rank 0 evaluates on its own."""
    revert_batchnorm(method)


# ---------------------------------------------------------------------------------------------
# Launching the workers


@dataclasses.dataclass(frozen=True)
class LaunchOptions:
    """Where the workers run: ``nnodes`` machines, this one being ``node_rank``, meeting at
    ``master_addr:master_port`` (node 0's address; ignored on one node)."""

    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500


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
    :class:`WorkerFailure`; a signal to the launcher raises KeyboardInterrupt."""
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
        raise KeyboardInterrupt(str(exc)) from None
    finally:
        if omp is None:
            del os.environ["OMP_NUM_THREADS"]
