"""RealNVP: an invertible encoder with a tractable log-determinant (Dinh, Sohl-Dickstein, Bengio,
"Density estimation using Real NVP", ICLR 2017, eqs. 4–9).

Each affine coupling layer keeps the coordinates selected by a binary mask m and transforms the
others given them:

    y = m ⊙ x + (1 − m) ⊙ (x ⊙ exp(s(m ⊙ x)) + t(m ⊙ x)),   log|det ∂y/∂x| = Σ (1 − m) ⊙ s,

with the masks alternating between even and odd coordinates. Tschannen et al. (ICLR 2020, sec. 3)
use such bijective encoders: I(g₁(x₁); g₂(x₂)) = I(x₁; x₂) whatever the weights, so any change in
downstream accuracy while maximising an MI bound comes from the bound and critic, not from MI.
"""

from __future__ import annotations

import torch
from torch import nn


class AffineCoupling(nn.Module):
    """One coupling layer; s and t come from one MLP, s bounded by tanh for stability. The last
    layer starts at zero, so the layer starts as the identity."""

    def __init__(self, dim: int, hidden_dim: int, parity: int) -> None:
        super().__init__()
        self.register_buffer("mask", (torch.arange(dim) % 2 == parity).float())
        self.net = nn.Sequential(nn.Linear(dim, hidden_dim), nn.ReLU(),
                                 nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
                                 nn.Linear(hidden_dim, 2 * dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _scale_shift(self, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.net(kept).chunk(2, dim=-1)
        free = 1 - self.mask
        return torch.tanh(s) * free, t * free

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self._scale_shift(x * self.mask)
        return x * s.exp() + t, s.sum(dim=-1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        s, t = self._scale_shift(y * self.mask)
        return (y - t) * (-s).exp()


class RealNVP(nn.Module):
    """``num_layers`` affine couplings on R^dim (alternating masks); ``out_dim`` = dim."""

    def __init__(self, dim: int, num_layers: int = 4, hidden_dim: int = 256) -> None:
        super().__init__()
        self.layers = nn.ModuleList(AffineCoupling(dim, hidden_dim, i % 2)
                                    for i in range(num_layers))
        self.out_dim = dim

    def forward_with_logdet(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, log|det ∂y/∂x|) for x [B, dim]."""
        logdet = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_logdet(x.flatten(1))[0]

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y
