"""Critics f(x, y) that score every pair of a batch: ``critic(x, y)[i, j] = f(x_i, y_j)``.

The three families of Tschannen et al., "On Mutual Information Maximization for Representation
Learning", ICLR 2020, sec. 3.1, with the paper's sizes by default:

- bilinear   f(x, y) = xᵀ W y on the encoders' outputs;
- separable  f(x, y) = φ(x)ᵀ ψ(y), φ and ψ MLPs (one hidden layer of 200 units) to 100-d;
- MLP        f(x, y) = MLP([x, y]), one hidden layer of 200 units, on the concatenation.

The MLP critic is the most expressive (it can represent a higher MI estimate), which is the
paper's point: a higher bound does not give a better representation.
"""

from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Linear → ReLU → Linear; no BatchNorm, so a score never depends on the rest of the batch."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))


class BilinearCritic(nn.Module):
    """f(x, y) = xᵀ W y (W initialised at 0: every pair scores 0 at the start)."""

    def __init__(self, x_dim: int, y_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(x_dim, y_dim))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x @ self.weight @ y.T


class SeparableCritic(nn.Module):
    """f(x, y) = φ(x)ᵀ ψ(y): two MLPs to ``embedding_dim``; all K² scores in one matmul."""

    def __init__(self, x_dim: int, y_dim: int, hidden_dim: int = 200,
                 embedding_dim: int = 100) -> None:
        super().__init__()
        self.phi = mlp(x_dim, hidden_dim, embedding_dim)
        self.psi = mlp(y_dim, hidden_dim, embedding_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.phi(x) @ self.psi(y).T


class ConcatCritic(nn.Module):
    """f(x, y) = w₂ᵀ ReLU(W₁ [x; y] + b₁) + b₂ for all K² pairs.

    W₁ [x; y] = W₁ˣ x + W₁ʸ y, so the first layer is applied to the K rows of x and of y once and
    broadcast to the K × K pairs, instead of K² concatenations; rows are done in chunks of
    ``chunk`` so the [chunk, K, hidden] activations stay small for large K.
    """

    def __init__(self, x_dim: int, y_dim: int, hidden_dim: int = 200, chunk: int = 64) -> None:
        super().__init__()
        self.x_dim, self.chunk = x_dim, chunk
        self.hidden = nn.Linear(x_dim + y_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = self.hidden.weight
        hx = x @ w[:, :self.x_dim].T + self.hidden.bias  # [K, h]
        hy = y @ w[:, self.x_dim:].T  # [K, h]
        rows = [self.out(torch.relu(hx[i:i + self.chunk, None, :] + hy[None, :, :])).squeeze(-1)
                for i in range(0, hx.shape[0], self.chunk)]
        return torch.cat(rows)


def build_critic(name: str, x_dim: int, y_dim: int, hidden_dim: int = 200,
                 embedding_dim: int = 100) -> nn.Module:
    """``bilinear``, ``separable`` or ``mlp`` (the concat critic)."""
    if name == "bilinear":
        return BilinearCritic(x_dim, y_dim)
    if name == "separable":
        return SeparableCritic(x_dim, y_dim, hidden_dim, embedding_dim)
    if name == "mlp":
        return ConcatCritic(x_dim, y_dim, hidden_dim)
    raise ValueError(f"unknown critic {name!r}")  # the config has already checked the name
