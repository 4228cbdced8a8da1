"""SimCLR: Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of
Visual Representations", ICML 2020.

Two augmented views of each image go through the encoder f and the projection head g; the
NT-Xent loss (eq. 1) pulls each view's projection towards its partner and away from the other
2N − 2 projections of the batch.
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
class SimCLRConfig:
    name: str = "simclr"
    temperature: float = bounded(0.2, lo=0.0, lo_open=True)  # τ in eq. 1; 0.2 for CIFAR-size data


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (SimCLR eq. 1), averaged over all 2N anchors.

    With u = z / ‖z‖ and s_ij = u_iᵀ u_j, for a positive pair (i, j):
    ℓ_ij = −log( exp(s_ij / τ) / Σ_{k ≠ i} exp(s_ik / τ) ); the k-sum runs over the 2N − 1 other
    views (one positive, 2N − 2 negatives; the self-pair k = i is excluded).
    z1[n] and z2[n] are the two views of image n; returns a scalar.
    """
    n = z1.shape[0]
    u = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (u @ u.T) / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=u.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    partner = torch.arange(2 * n, device=u.device).roll(n)  # i ↔ i + N
    return F.cross_entropy(logits, partner)


class SimCLR(Method):
    def __init__(self, cfg: RunConfig, backbone: nn.Module) -> None:
        super().__init__(cfg, backbone)
        self.projector = self.make_projector(cfg.model)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        # By default one encoder pass over both views: the batch norm sees all 2N views, as in
        # SimCLR's code (model.forward_views).
        z1, z2 = self.forward_views(self.encode, views)
        # Negatives from the global batch: 2B − 2 per anchor on any number of workers.
        return nt_xent(gather(z1), gather(z2), self.cfg.temperature), {}


SPEC = MethodSpec(
    name="simclr",
    paper="Chen et al., A Simple Framework for Contrastive Learning of Visual Representations, "
          "ICML 2020",
    family="contrastive",
    config_cls=SimCLRConfig,
    method_cls=SimCLR,
    losses=(nt_xent,),
)
