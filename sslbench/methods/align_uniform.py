"""Alignment and uniformity: Wang & Isola, "Understanding Contrastive Representation Learning
through Alignment and Uniformity on the Hypersphere", ICML 2020.

The encoder (backbone → projector, outputs l2-normalised) is trained directly on the two
properties the paper identifies in contrastive losses: positive pairs close (alignment, §4.1)
and features spread uniformly over the sphere (uniformity, a Gaussian-potential energy, §4.1).
L = L_align(α) + weight · L_uniform(t), uniformity averaged over the two views as in the
reference code.
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
class AlignUniformConfig:
    name: str = "align_uniform"
    alpha: float = bounded(2.0, lo=0.0, lo_open=True)  # α of L_align
    t: float = bounded(2.0, lo=0.0, lo_open=True)  # t of L_uniform
    weight: float = bounded(1.0, lo=0.0)  # λ on L_uniform


def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """L_align = E_{(x,y)~p_pos} ‖f(x) − f(y)‖₂^α (Wang & Isola, §4.1); ``x[n]``, ``y[n]`` are
    the normalised features of a positive pair."""
    return (x - y).norm(dim=1).pow(alpha).mean()


def uniformity(x: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """L_uniform = log E_{x,y ~iid p_data} exp(−t ‖f(x) − f(y)‖₂²) (Wang & Isola, §4.1), the
    expectation over the distinct pairs of rows of ``x`` (normalised features)."""
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()


def align_uniform_loss(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2.0, t: float = 2.0,
                       weight: float = 1.0) -> torch.Tensor:
    """L_align(α) + weight · (L_uniform(z₁; t) + L_uniform(z₂; t)) / 2 on l2-normalised z."""
    u1, u2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    return alignment(u1, u2, alpha) + weight * (uniformity(u1, t) + uniformity(u2, t)) / 2


class AlignUniform(Method):
    def __init__(self, cfg: RunConfig, backbone: nn.Module) -> None:
        super().__init__(cfg, backbone)
        self.projector = self.make_projector(cfg.model)

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        z1, z2 = self.forward_views(lambda x: self.projector(self.backbone(x)), views)
        z1, z2 = gather(z1), gather(z2)  # uniformity over the pairs of the global batch
        c = self.cfg
        return align_uniform_loss(z1, z2, c.alpha, c.t, c.weight), {}


SPEC = MethodSpec(
    name="align_uniform",
    paper="Wang & Isola, Understanding Contrastive Representation Learning through Alignment "
          "and Uniformity on the Hypersphere, ICML 2020",
    family="contrastive",
    config_cls=AlignUniformConfig,
    method_cls=AlignUniform,
    losses=(align_uniform_loss, alignment, uniformity),
)
