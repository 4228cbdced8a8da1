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

from sslbench.config import RunConfig, _f
from sslbench.methods import MethodSpec
from sslbench.models.heads import MLP
from sslbench.train.distributed import gather


@dataclass
class AlignUniformConfig:
    name: str = "align_uniform"
    alpha: float = _f(2.0, lo=0.0, lo_open=True)  # α of L_align
    t: float = _f(2.0, lo=0.0, lo_open=True)  # t of L_uniform
    weight: float = _f(1.0, lo=0.0)  # λ on L_uniform


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


class AlignUniform(nn.Module):
    def __init__(self, cfg: RunConfig, backbone: nn.Module) -> None:
        super().__init__()
        m = cfg.model
        self.cfg = cfg.method
        self.backbone = backbone
        self.projector = MLP(backbone.out_dim, m.projector_hidden_dim, m.projector_dim,
                             m.projector_layers)

    def training_step(self, view1: torch.Tensor, view2: torch.Tensor
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z1, z2 = self.projector(self.backbone(torch.cat([view1, view2]))).chunk(2)
        z1, z2 = gather(z1), gather(z2)  # uniformity over the pairs of the global batch
        c = self.cfg
        return align_uniform_loss(z1, z2, c.alpha, c.t, c.weight), {}

    def on_train_step_end(self, step: int, total_steps: int) -> dict[str, float]:
        return {}


def build(cfg: RunConfig, backbone: nn.Module) -> AlignUniform:
    return AlignUniform(cfg, backbone)


SPEC = MethodSpec(
    name="align_uniform",
    paper="Wang & Isola, Understanding Contrastive Representation Learning through Alignment "
          "and Uniformity on the Hypersphere, ICML 2020",
    family="contrastive",
    config_cls=AlignUniformConfig,
    build=build,
    defaults={},
)
