"""Correlated Gaussians with a known mutual information, and their optimal critics.

(x, y) ∈ R^d × R^d, every coordinate pair (x_k, y_k) standard bivariate normal with correlation ρ
and independent of the others: I(X; Y) = −(d/2) log(1 − ρ²) nats. The log density ratio is

    log p(y | x)/p(y) = Σ_k [ −½ log(1 − ρ²) − (y_k − ρ x_k)² / (2(1 − ρ²)) + y_k² / 2 ],

the optimal critic of InfoNCE and DV; NWJ's optimal critic is 1 + that (Poole et al. 2019).
"""

from __future__ import annotations

import math

import torch


def gaussian_mi(rho: float, dim: int) -> float:
    """I(X; Y) in nats for ``dim`` independent coordinate pairs of correlation ``rho``."""
    return -0.5 * dim * math.log(1 - rho**2)


def rho_for_mi(mi: float, dim: int) -> float:
    """The correlation that gives I(X; Y) = ``mi`` nats over ``dim`` coordinates."""
    return math.sqrt(1 - math.exp(-2 * mi / dim))


def sample_correlated(n: int, dim: int, rho: float, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """n pairs: x ~ N(0, I), y = ρ x + √(1 − ρ²) ε."""
    x = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    eps = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    return x, rho * x + math.sqrt(1 - rho**2) * eps


def log_density_ratio(x: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    """``[i, j] = log p(y_j | x_i) / p(y_j)``: the closed-form optimal critic for all pairs."""
    var = 1 - rho**2
    diff = y[None, :, :] - rho * x[:, None, :]
    per_dim = -0.5 * math.log(var) - diff.pow(2) / (2 * var) + y[None, :, :].pow(2) / 2
    return per_dim.sum(dim=-1)
