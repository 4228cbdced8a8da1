"""MoCo v3: Chen, Xie, He, "An Empirical Study of Training Self-Supervised Vision Transformers",
ICCV 2021.

No queue: the negatives of a query are the other keys of the same batch. The online network
(backbone → projector → predictor) makes the queries, a momentum target (backbone → projector,
τ cosine-scheduled to 1) the keys; the loss is the symmetrised contrastive loss of Algorithm 1,
ctr(q₁, k₂) + ctr(q₂, k₁), where ctr is InfoNCE scaled by 2τ.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from sslbench.config import RunConfig, bounded
from sslbench.distributed.collectives import gather
from sslbench.methods import MethodSpec
from sslbench.methods.base import Method, StepOutput
from sslbench.methods.common import (
    add_momentum_target,
    build_predictor,
    info_nce,
    predictor_param_groups,
    target_forward,
    target_pairs,
)


@dataclass
class MoCoV3Config:
    name: str = "mocov3"
    # τ: 0.2 for ViT and CIFAR, 1.0 for ResNet-50
    temperature: float = bounded(0.2, lo=0.0, lo_open=True)
    ema_decay: float = bounded(0.99, lo=0.0, hi=1.0)  # m at step 0 (0.99 in the paper)
    ema_final: float = bounded(1.0, lo=0.0, hi=1.0)  # m at the last step (cosine schedule)
    predictor_hidden_dim: int = bounded(512, lo=1)  # 4096 in the paper
    use_predictor: bool = True
    predictor_lr_mult: float = bounded(1.0, lo=0.0)


def mocov3_loss(q1: torch.Tensor, q2: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor,
                temperature: float) -> torch.Tensor:
    """MoCo v3, Algorithm 1: ctr(q₁, k₂) + ctr(q₂, k₁) with
    ctr(q, k) = 2τ · mean_n −log( exp(q_n·k_n/τ) / Σ_m exp(q_n·k_m/τ) ) on l2-normalised vectors.

    The 2τ factor makes the gradient scale independent of τ. Keys are detached (the momentum
    encoder gets no gradient).
    """
    def ctr(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return 2 * temperature * info_nce(q, k.detach(), temperature)

    return ctr(q1, k2) + ctr(q2, k1)


class MoCoV3(Method):
    def __init__(self, cfg: RunConfig, backbone: nn.Module) -> None:
        super().__init__(cfg, backbone)
        m, c = cfg.model, cfg.method
        # As in the reference code: the projector ends in BN without affine; the predictor not.
        self.projector = self.make_projector(m, last_bn=True, last_bn_affine=False)
        self.predictor = build_predictor(c.use_predictor, m.projector_dim, c.predictor_hidden_dim)
        add_momentum_target(self)

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        q1, q2 = self.forward_views(lambda x: self.predictor(self.projector(self.backbone(x))),
                                    views)
        k1, k2 = self.forward_views(partial(target_forward, self), views)
        # In-batch negatives of the global batch (Algorithm 1 gathers the keys across devices).
        q1, q2, k1, k2 = (gather(t) for t in (q1, q2, k1, k2))
        return mocov3_loss(q1, q2, k1, k2, self.cfg.temperature), {}

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return target_pairs(self)

    def param_groups(self) -> list[dict[str, Any]]:
        return predictor_param_groups(self, self.cfg.predictor_lr_mult)


SPEC = MethodSpec(
    name="mocov3",
    paper="Chen, Xie, He, An Empirical Study of Training Self-Supervised Vision Transformers, "
          "ICCV 2021",
    family="contrastive",
    config_cls=MoCoV3Config,
    method_cls=MoCoV3,
    losses=(mocov3_loss,),
)
