"""Small encoders for the two-halves task of Tschannen et al. (ICLR 2020, sec. 3): an MLP on the
flattened pixels, and a wrapper that encodes one half of a full image (so a linear probe on full
images evaluates the encoder of the top half, as in the paper)."""

from __future__ import annotations

import torch
from torch import nn

from sslbench.data.views import image_half


class MLPEncoder(nn.Module):
    """Flatten → Linear → ReLU → Linear → ReLU → Linear to ``out_dim``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_dim, hidden_dim), nn.ReLU(),
                                 nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
                                 nn.Linear(hidden_dim, out_dim))
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class HalfEncoder(nn.Module):
    """``encoder`` applied to the ``top`` or ``bottom`` half of full images [B, C, H, W]."""

    def __init__(self, encoder: nn.Module, half: str) -> None:
        super().__init__()
        self.encoder, self.half = encoder, half
        self.out_dim: int = encoder.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(image_half(x, self.half))
