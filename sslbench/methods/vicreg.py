"""VICReg: Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022.

Both views go through the same encoder and expander. Three terms act on the expanded embeddings
Z, Z′ ∈ R^{n×d}: invariance (the two views agree), variance (every feature keeps a standard
deviation of at least γ over the batch, a hinge) and covariance (features are decorrelated).

Normalisation. The defaults λ = μ = 25, ν = 1 were tuned with the reference implementation
(facebookresearch/vicreg), which this module follows. In the paper's notation (eqs. 1–6):

- invariance: the paper's s(Z, Z′) = (1/n) Σ_i ‖z_i − z′_i‖² (eq. 5); the reference uses the mean
  squared error over all n·d elements, i.e. s(Z, Z′) / d;
- variance: v(Z) = (1/d) Σ_j max(0, γ − sqrt(Var(z^j) + ε)) (eqs. 1–2), as in the paper, but the
  two branches are averaged, (v(Z) + v(Z′)) / 2, where eq. 6 sums them;
- covariance: c(Z) = (1/d) Σ_{i≠j} C(Z)_ij² with C(Z) the unbiased covariance (eqs. 3–4), summed
  over the branches, c(Z) + c(Z′), as in eq. 6.

So ℓ = λ s(Z, Z′)/d + μ (v(Z) + v(Z′))/2 + ν (c(Z) + c(Z′)): eq. 6 with λ scaled by 1/d and μ
by 1/2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sslbench.config import RunConfig, bounded
from sslbench.distributed.collectives import gather
from sslbench.methods import MethodSpec
from sslbench.methods.base import Method, StepOutput


@dataclass
class VICRegConfig:
    name: str = "vicreg"
    invariance_weight: float = bounded(25.0, lo=0.0)  # λ
    variance_weight: float = bounded(25.0, lo=0.0)  # μ
    covariance_weight: float = bounded(1.0, lo=0.0)  # ν
    variance_target: float = bounded(1.0, lo=0.0, lo_open=True)  # γ in eq. 1
    epsilon: float = bounded(1e-4, lo=0.0, lo_open=True)  # ε in eq. 1 (numerical stability)


def invariance_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """VICReg invariance, eq. 5 divided by d: the mean squared error over all n·d elements."""
    return F.mse_loss(z1, z2)


def variance_loss(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg eqs. 1–2: v(Z) = (1/d) Σ_j max(0, γ − sqrt(Var(z^j) + ε)), Var unbiased over the
    batch. Zero when every feature's standard deviation is at least γ (up to ε)."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def covariance_loss(z: torch.Tensor) -> torch.Tensor:
    """VICReg eqs. 3–4: c(Z) = (1/d) Σ_{i≠j} C(Z)_ij², C(Z) = Σ_i (z_i − z̄)(z_i − z̄)ᵀ / (n − 1).
    Zero when the features are decorrelated over the batch."""
    n, d = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (n - 1)
    return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / d


def vicreg(z1: torch.Tensor, z2: torch.Tensor, invariance_weight: float = 25.0,
           variance_weight: float = 25.0, covariance_weight: float = 1.0, gamma: float = 1.0,
           eps: float = 1e-4) -> torch.Tensor:
    """VICReg eq. 6 with the reference normalisation (see the module docstring):
    ℓ = λ·MSE(Z, Z′) + μ·(v(Z) + v(Z′))/2 + ν·(c(Z) + c(Z′)) for embeddings [n, d] of two views.
    """
    variance = (variance_loss(z1, gamma, eps) + variance_loss(z2, gamma, eps)) / 2
    covariance = covariance_loss(z1) + covariance_loss(z2)
    return (invariance_weight * invariance_loss(z1, z2) + variance_weight * variance
            + covariance_weight * covariance)


class VICReg(Method):
    default_views_mode = "separate"

    def __init__(self, cfg: RunConfig, backbone: nn.Module) -> None:
        super().__init__(cfg, backbone)
        # The paper's "expander" (§4.2): three layers, BN + ReLU after the first two (8192 wide on
        # ImageNet), as Barlow Twins' projector. Named projector like every method's head, so
        # evaluation and diagnostics find it.
        self.projector = self.make_projector(cfg.model, last_bias=False)

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        # By default each view on its own through the network (its BN sees one view), as the
        # reference (default_views_mode).
        z1, z2 = self.forward_views(lambda x: self.projector(self.backbone(x)), views)
        z1, z2 = gather(z1), gather(z2)  # statistics over the global batch
        c = self.cfg
        with torch.autocast(z1.device.type, enabled=False):  # covariances in full precision
            loss = vicreg(z1.float(), z2.float(), c.invariance_weight, c.variance_weight,
                          c.covariance_weight, c.variance_target, c.epsilon)
        return loss, {}


SPEC = MethodSpec(
    name="vicreg",
    paper="Bardes, Ponce, LeCun, VICReg: Variance-Invariance-Covariance Regularization for "
          "Self-Supervised Learning, ICLR 2022",
    family="redundancy reduction",
    config_cls=VICRegConfig,
    method_cls=VICReg,
    losses=(vicreg, invariance_loss, variance_loss, covariance_loss),
    # The paper's expander is 8192-8192-8192 on ImageNet; 1024 wide fits the CPU and 28×28 data.
    defaults={
        "model.projector_layers": 3,
        "model.projector_hidden_dim": 1024,
        "model.projector_dim": 1024,
    },
)
