"""Frozen features of a whole split, computed in batches without augmentation."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from sslbench.data.augment import normalize


@torch.no_grad()
def extract_features(encoder: nn.Module, images: torch.Tensor, mean: tuple[float, ...],
                     std: tuple[float, ...], device: torch.device, batch_size: int = 1024,
                     ) -> torch.Tensor:
    """``encoder`` (in eval mode) applied to uint8 ``images`` [N, C, H, W] → float [N, D] on CPU."""
    was_training = encoder.training
    encoder.eval().to(device)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = normalize(images[start:start + batch_size].to(device, non_blocking=True), mean, std)
        with autocast:
            out.append(encoder(x).float().cpu())
    encoder.train(was_training)
    return torch.cat(out)
