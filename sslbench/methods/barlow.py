"""Barlow Twins: Zbontar, Jing, Misra, LeCun, Deny, "Barlow Twins: Self-Supervised Learning via
Redundancy Reduction", ICML 2021.

Both views go through the same encoder and projector; the cross-correlation matrix of the two
batch-normalised embeddings is pushed towards the identity (eq. 1–2): its diagonal to 1
(invariance) and its off-diagonal entries to 0 (redundancy reduction), the latter weighted by λ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sslbench.config import RunConfig, bounded
from sslbench.distributed.collectives import gather
from sslbench.methods import MethodSpec
from sslbench.methods.base import Method, StepOutput


@dataclass
class BarlowTwinsConfig:
    name: str = "barlow"
    lambda_offdiag: float = bounded(5e-3, lo=0.0)  # λ in eq. 1 (≈ 1/d in the paper, d = 8192)
    scale_loss: float = bounded(1.0, lo=0.0, lo_open=True)  # overall factor (1/32 in early code)


def batch_standardise(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each feature to zero mean and unit (biased) variance over the batch: BatchNorm1d without
    affine parameters, in training mode, as the paper's pseudo-code (Algorithm 1)."""
    return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + eps)


def cross_correlation(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Barlow Twins eq. 2: C_ij = Σ_b ẑ1_bi ẑ2_bj / N for batch-standardised embeddings ẑ, i.e.
    the cosine of feature i of view 1 and feature j of view 2 across the batch; [d, d]."""
    return batch_standardise(z1).T @ batch_standardise(z2) / z1.shape[0]


def barlow_twins(z1: torch.Tensor, z2: torch.Tensor, lambda_offdiag: float = 5e-3,
                 scale_loss: float = 1.0) -> torch.Tensor:
    """Barlow Twins eq. 1: L = Σ_i (1 − C_ii)² + λ Σ_i Σ_{j≠i} C_ij², times ``scale_loss``.

    ``z1[n]`` and ``z2[n]`` are the embeddings [N, d] of the two views of image n; C is the
    cross-correlation of eq. 2 (:func:`cross_correlation`). Because each feature is standardised
    over the batch, the loss is invariant to a per-feature affine map of the embeddings
    (z ↦ a ⊙ z + b with a ≠ 0 applied to both views) and to the order of the batch.
    """
    c = cross_correlation(z1, z2)
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return scale_loss * (on_diag + lambda_offdiag * off_diag)


class BarlowTwins(Method):
    default_views_mode = "separate"

    def __init__(self, cfg: RunConfig, backbone: nn.Module) -> None:
        super().__init__(cfg, backbone)
        # §4: three linear layers, BN + ReLU after the first two, no bias on the last.
        self.projector = self.make_projector(cfg.model, last_bias=False)

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        # By default each view through the network on its own (default_views_mode): the
        # projector's BN sees one view at a time, as in the reference implementation.
        z1, z2 = self.forward_views(lambda x: self.projector(self.backbone(x)), views)
        z1, z2 = gather(z1), gather(z2)  # statistics over the global batch
        # The d × d cross-correlation in full precision: bf16 sums over the batch are too coarse.
        with torch.autocast(z1.device.type, enabled=False):
            loss = barlow_twins(z1.float(), z2.float(), self.cfg.lambda_offdiag,
                                self.cfg.scale_loss)
        return loss, {}


SPEC = MethodSpec(
    name="barlow",
    paper="Zbontar et al., Barlow Twins: Self-Supervised Learning via Redundancy Reduction, "
          "ICML 2021",
    family="redundancy reduction",
    config_cls=BarlowTwinsConfig,
    method_cls=BarlowTwins,
    losses=(barlow_twins, cross_correlation),
    # The paper's projector is 8192-8192-8192 on ImageNet; 1024 wide fits the CPU and 28×28 data.
    defaults={
        "model.projector_layers": 3,
        "model.projector_hidden_dim": 1024,
        "model.projector_dim": 1024,
    },
)
