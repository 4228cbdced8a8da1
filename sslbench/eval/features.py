"""Frozen features of a whole split, computed in batches without augmentation."""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from sslbench.data.augment import normalize


@torch.no_grad()
def extract_features(encoder: nn.Module, images: torch.Tensor, mean: tuple[float, ...],
                     std: tuple[float, ...], device: torch.device, batch_size: int = 1024,
                     ) -> torch.Tensor:
    """``encoder`` (in eval mode) applied to uint8 ``images`` [N, C, H, W] → float [N, D] on CPU,
    in the channels-last layout (see :func:`channels_last`)."""
    was_training = encoder.training
    encoder.eval().to(device)
    model = channels_last(encoder)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())
    out = []
    try:
        for start in range(0, images.shape[0], batch_size):
            x = normalize(images[start:start + batch_size].to(device, non_blocking=True), mean,
                          std)
            if x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                out.append(model(x).float().cpu())
    finally:
        encoder.train(was_training)
    return torch.cat(out)


def channels_last(encoder: nn.Module) -> nn.Module:
    """``encoder`` with its convolution weights in the channels-last layout: oneDNN's and cuDNN's
    faster path (the ConvNet's forward on a batch of 1024 took 0.53 s instead of 0.83 s on 2 CPU
    cores). A copy unless they are in it already, so that a model still in training keeps its
    layout, and with it its numerics (a resumed run must take the same steps)."""
    weights = [p for p in encoder.parameters() if p.dim() == 4]
    if not weights or all(p.is_contiguous(memory_format=torch.channels_last) for p in weights):
        return encoder
    return copy.deepcopy(encoder).to(memory_format=torch.channels_last)
