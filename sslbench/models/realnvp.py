"""RealNVP as Tschannen et al. (ICLR 2020, sec. 3.1) built it: a bijective encoder from coupling
layers (Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017, eqs. 4–9),
following the authors' notebook (google-research, ``mutual_information_representation_learning``).

Each layer permutes the coordinates with a fixed random permutation, keeps the first ⌊d/2⌋ of
them (x₀) and transforms the others (x₁) given them:

    additive (``scale="none"``):  y₁ = x₁ + t(x₀),              log|det| = 0;
    affine (``scale="softplus"``): y₁ = s(x₀) ⊙ x₁ + t(x₀),     s = 10⁻⁷ + softplus(·) > 0,

the softplus being the notebook's replacement for exp (numerical stability). t and s come from an
MLP with ReLU hidden layers (the paper: two of 512 units, 30 layers) whose weights start at
N(0, 10⁻⁴) truncated at two standard deviations and whose biases start at zero, so an additive
flow starts as a permutation of its input. Whatever its weights, the encoder is invertible:
I(g₁(x₁); g₂(x₂)) = I(x₁; x₂), so any change of a downstream accuracy while maximising an MI bound
comes from the bound, the critic and the architecture, not from MI.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

INIT_STD = 1e-4
SCALE_FLOOR = 1e-7  # keeps s > 0 where the softplus underflows
SCALES = ("none", "softplus")


class Coupling(nn.Module):
    """Permute, then shift (and scale) the second half of the coordinates given the first."""

    def __init__(self, dim: int, hidden_dims: tuple[int, ...], scale: str) -> None:
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, not {scale!r}")
        self.register_buffer("permutation", torch.randperm(dim))
        self.kept, self.scale = dim // 2, scale
        free = dim - self.kept
        sizes = (self.kept, *hidden_dims)
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], free * (1 if scale == "none" else 2)))
        self.net = nn.Sequential(*layers)
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=INIT_STD, a=-2 * INIT_STD, b=2 * INIT_STD)
                nn.init.zeros_(layer.bias)

    def _shift_scale(self, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.net(kept)
        if self.scale == "none":
            return out, None
        shift, raw = out.chunk(2, dim=-1)
        return shift, SCALE_FLOOR + F.softplus(raw)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x[:, self.permutation]
        x0, x1 = x[:, :self.kept], x[:, self.kept:]
        shift, s = self._shift_scale(x0)
        if s is None:
            return torch.cat([x0, x1 + shift], dim=1), x.new_zeros(x.shape[0])
        return torch.cat([x0, s * x1 + shift], dim=1), s.log().sum(dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y0, y1 = y[:, :self.kept], y[:, self.kept:]
        shift, s = self._shift_scale(y0)
        x1 = y1 - shift if s is None else (y1 - shift) / s
        return torch.cat([y0, x1], dim=1)[:, torch.argsort(self.permutation)]


class RealNVP(nn.Module):
    """``num_layers`` couplings on R^dim with hidden layers ``hidden_dims``; ``out_dim`` = dim."""

    def __init__(self, dim: int, num_layers: int = 30, hidden_dims: tuple[int, ...] = (512, 512),
                 scale: str = "none") -> None:
        super().__init__()
        self.layers = nn.ModuleList(Coupling(dim, tuple(hidden_dims), scale)
                                    for _ in range(num_layers))
        self.out_dim = dim

    def forward_with_logdet(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, log|det ∂y/∂x|) for x [B, dim] (a permutation has |det| = 1)."""
        logdet = x.new_zeros(x.shape[0])
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
