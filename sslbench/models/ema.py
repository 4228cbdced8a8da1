"""Exponential moving average (momentum) targets, BYOL-style.

Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020, §3.1 and §3.2: after each step the target
parameters follow ξ ← τ ξ + (1 − τ) θ, with τ increased from τ_base to 1 by
τ_k = 1 − (1 − τ_base) · (cos(π k / K) + 1) / 2 over the K training steps.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def cosine_ema_decay(base: float, step: int, total_steps: int, final: float = 1.0) -> float:
    """τ at ``step`` of ``total_steps``: ``base`` at step 0, ``final`` at the last step."""
    if total_steps <= 0:
        return final
    progress = min(max(step / total_steps, 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, decay: float) -> None:
    """ξ ← decay · ξ + (1 − decay) · θ for every parameter; buffers (BN statistics) are copied."""
    t_params = list(target.parameters())
    o_params = list(online.parameters())
    torch._foreach_lerp_(t_params, o_params, 1.0 - decay)
    for t_buf, o_buf in zip(target.buffers(), online.buffers(), strict=True):
        t_buf.copy_(o_buf)
