"""One training step under DistributedDataParallel: what the loop calls in a distributed run."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sslbench.distributed.batchnorm import convert_batchnorm, revert_batchnorm
from sslbench.distributed.collectives import is_distributed


class _TrainingStep(nn.Module):
    """DDP wraps ``forward``: this forward is the method's ``training_step``."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, views: list[torch.Tensor]) -> Any:
        return self.method.training_step(views)


StepFn = Callable[[list[torch.Tensor]], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def prepare(method: nn.Module, device: torch.device, sync_batchnorm: bool = True) -> StepFn:
    """The function the loop calls for a training step: ``method.training_step`` in a single
    process; in a distributed run the method with its BatchNorms global (``sync_batchnorm``)
    inside DistributedDataParallel, which averages the gradients over the ranks.

    DDP broadcasts the parameters and buffers of rank 0 once here; ``forward_sync_buffers`` is off
    because every rank's buffers (BN statistics, queues fed by ``gather``, EMA targets) stay
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
