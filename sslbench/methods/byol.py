"""BYOL: Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning",
NeurIPS 2020.

An online network (encoder, projector, predictor q) predicts the projection of the other view
made by a target network (encoder, projector) whose weights are an exponential moving average of
the online ones; the target receives no gradient (stop-gradient). Loss: eq. 2, symmetrised.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sslbench.config import RunConfig, bounded
from sslbench.methods import MethodSpec
from sslbench.methods.base import Method, StepOutput
from sslbench.methods.common import (
    add_momentum_target,
    build_predictor,
    predictor_param_groups,
    target_forward,
    target_pairs,
)


@dataclass
class BYOLConfig:
    name: str = "byol"
    ema_decay: float = bounded(0.99, lo=0.0, hi=1.0)  # τ_base (0.996 on ImageNet, 0.99 for CIFAR)
    ema_final: float = bounded(1.0, lo=0.0, hi=1.0)  # τ at the last step (cosine schedule)
    predictor_hidden_dim: int = bounded(512, lo=1)
    # Collapse ablations: no predictor (Table 5b), the predictor's lr relative to the rest.
    use_predictor: bool = True
    predictor_lr_mult: float = bounded(1.0, lo=0.0)
    # the predictor's lr not scheduled, as SimSiam's §4.3 (not in BYOL's paper; an ablation)
    predictor_fixed_lr: bool = False


def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BYOL eq. 2, averaged over the batch: ‖q̄ − z̄′‖² = 2 − 2 · ⟨q, z′⟩ / (‖q‖ ‖z′‖).

    ``target`` is detached here: the stop-gradient of the target network is part of the loss.
    """
    cos = F.cosine_similarity(prediction, target.detach(), dim=-1)
    return (2 - 2 * cos).mean()


class BYOL(Method):
    def __init__(self, cfg: RunConfig, backbone: nn.Module) -> None:
        super().__init__(cfg, backbone)
        m, c = cfg.model, cfg.method
        self.projector = self.make_projector(m)
        self.predictor = build_predictor(c.use_predictor, m.projector_dim, c.predictor_hidden_dim)
        add_momentum_target(self)

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        p1, p2 = self.forward_views(lambda x: self.predictor(self.projector(self.backbone(x))),
                                    views)
        t1, t2 = self.forward_views(partial(target_forward, self), views)
        # L^BYOL = L(q(z1), z'2) + L(q(z2), z'1): the symmetrised loss of §3.1. A per-sample
        # mean: no gather across workers; the targets follow identical online weights.
        return byol_loss(p1, t2) + byol_loss(p2, t1), {}

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return target_pairs(self)

    def param_groups(self) -> list[dict[str, Any]]:
        return predictor_param_groups(self, self.cfg.predictor_lr_mult,
                                      self.cfg.predictor_fixed_lr)


SPEC = MethodSpec(
    name="byol",
    paper="Grill et al., Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning, "
          "NeurIPS 2020",
    family="distillation",
    config_cls=BYOLConfig,
    method_cls=BYOL,
    losses=(byol_loss,),
)
