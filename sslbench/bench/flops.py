"""Model FLOPs of a training step, counted by PyTorch's ``FlopCounterMode`` (matrix products and
convolutions, forward and backward), and the model FLOP utilisation (MFU) they imply."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, for MFU on those GPUs.
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "A6000": 154.8, "L40S": 362.0,
               "RTX 4090": 165.2}


def training_flops_per_image(method: nn.Module, views: Sequence[torch.Tensor]) -> float:
    """FLOPs of one ``training_step`` plus its backward pass, per image of the batch (each image
    gives all its views); counted once on ``views`` (a small batch is enough: the cost per image
    of the encoder does not depend on the batch)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = method.training
    method.train()
    with FlopCounterMode(display=False) as counter:
        loss, _ = method.training_step(list(views))
        loss.backward()
    method.zero_grad(set_to_none=True)
    method.train(was_training)
    return counter.get_total_flops() / views[0].shape[0]


def peak_tflops(device_name: str) -> float | None:
    """The bf16 peak of a known GPU named in ``device_name`` (e.g. 'NVIDIA H100 80GB HBM3')."""
    for gpu, tflops in sorted(PEAK_TFLOPS.items(), key=lambda kv: -len(kv[0])):
        if gpu in device_name:
            return tflops
    return None
