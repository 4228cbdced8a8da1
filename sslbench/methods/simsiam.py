"""SimSiam: Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021.

One network (backbone → projector f, predictor h) for both views, no negatives, no momentum
target: each view's prediction p = h(f(x)) is pulled towards the other view's projection z, which
is treated as a constant (stop-gradient). Without the stop-gradient the outputs collapse to a
constant (§4.1, Fig. 2): set ``method.stop_gradient=false`` to see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sslbench.config import RunConfig, bounded
from sslbench.methods import MethodSpec
from sslbench.methods.base import Method, StepOutput
from sslbench.methods.common import build_predictor, negative_cosine, predictor_param_groups


@dataclass
class SimSiamConfig:
    name: str = "simsiam"
    # The paper's predictor is a bottleneck, 2048 → 512 → 2048; here projector_dim (128) → 32.
    predictor_hidden_dim: int = bounded(32, lo=1)
    stop_gradient: bool = True
    projector_last_bn: bool = True  # BN on the projector's output, as in the paper
    # its learnable scale and shift; the official code (main_simsiam.py, simsiam/builder.py) and
    # solo-learn use BatchNorm1d(dim, affine=False) there
    projector_last_bn_affine: bool = True
    use_predictor: bool = True
    predictor_lr_mult: float = bounded(1.0, lo=0.0)
    # the predictor's lr stays at its initial value, neither warmed up nor decayed (§4.3: "this
    # is better than decaying"; the official code's --fix-pred-lr, solo-learn's static_lr)
    predictor_fixed_lr: bool = False


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor,
                 stop_gradient: bool = True) -> torch.Tensor:
    """SimSiam eq. 4: L = ½ D(p₁, stopgrad(z₂)) + ½ D(p₂, stopgrad(z₁)), with D the negative
    cosine similarity of eq. 1. ``stop_gradient=False`` gives eq. 3 (which collapses)."""
    if stop_gradient:
        z1, z2 = z1.detach(), z2.detach()
    return negative_cosine(p1, z2) / 2 + negative_cosine(p2, z1) / 2


class SimSiam(Method):
    def __init__(self, cfg: RunConfig, backbone: nn.Module) -> None:
        super().__init__(cfg, backbone)
        m, c = cfg.model, cfg.method
        self.projector = self.make_projector(m, last_bn=c.projector_last_bn,
                                            last_bn_affine=c.projector_last_bn_affine)
        self.predictor = build_predictor(c.use_predictor, m.projector_dim, c.predictor_hidden_dim)

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        z1, z2 = self.forward_views(lambda x: self.projector(self.backbone(x)), views)
        p1, p2 = self.forward_views(self.predictor, [z1, z2])
        # a per-sample loss: no gather across workers
        return simsiam_loss(p1, p2, z1, z2, self.cfg.stop_gradient), {}

    def param_groups(self) -> list[dict[str, Any]]:
        return predictor_param_groups(self, self.cfg.predictor_lr_mult,
                                      self.cfg.predictor_fixed_lr)


SPEC = MethodSpec(
    name="simsiam",
    paper="Chen & He, Exploring Simple Siamese Representation Learning, CVPR 2021",
    family="distillation",
    config_cls=SimSiamConfig,
    method_cls=SimSiam,
    losses=(simsiam_loss, negative_cosine),
)
