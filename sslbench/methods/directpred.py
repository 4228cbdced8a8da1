"""DirectPred: Tian, Chen, Ganguli, "Understanding Self-Supervised Learning Dynamics without
Contrastive Pairs", ICML 2021.

BYOL with a linear predictor W_p that is not learned but set from the eigendecomposition of the
running correlation of the online projections f (§5):

    F̂ ← ρ F̂ + (1 − ρ) E[f fᵀ],   F̂ = Û diag(s) Ûᵀ,   p_j = sqrt(s_j / max_k s_k) + ε,
    W_p = Û diag(p) Ûᵀ.

The target is BYOL's momentum encoder; ``ema_decay=0`` with ``ema_final=0`` makes it a
shared-weight target (SimSiam-style), which the paper also trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from sslbench.config import RunConfig, bounded
from sslbench.distributed.collectives import gather
from sslbench.methods import MethodSpec
from sslbench.methods.base import Method, StepOutput
from sslbench.methods.byol import byol_loss
from sslbench.methods.common import add_momentum_target, target_forward, target_pairs


@dataclass
class DirectPredConfig:
    name: str = "directpred"
    rho: float = bounded(0.3, lo=0.0, hi=1.0, hi_open=True)  # ρ: decay of the running correlation
    eps: float = bounded(0.01, lo=0.0)  # ε added to every eigenvalue of W_p
    update_every: int = bounded(1, lo=1)  # set W_p every this many steps (freq in the paper)
    ema_decay: float = bounded(0.99, lo=0.0, hi=1.0)  # BYOL's τ_base
    ema_final: float = bounded(1.0, lo=0.0, hi=1.0)


def directpred_predictor(correlation: torch.Tensor, eps: float) -> torch.Tensor:
    """W_p = Û diag(p) Ûᵀ with p_j = sqrt(s_j / max s) + ε from F̂ = Û diag(s) Ûᵀ (§5).

    Eigenvalues below 0 (round-off of a PSD matrix) count as 0. Computed in float32 or better.
    """
    s, u = torch.linalg.eigh(correlation.to(torch.promote_types(correlation.dtype, torch.float32)))
    s = s.clamp_min(0)
    p = (s / s.max().clamp_min(torch.finfo(s.dtype).tiny)).sqrt() + eps
    return (u * p) @ u.T


@torch.no_grad()
def update_correlation(correlation: torch.Tensor, f: torch.Tensor, rho: float) -> None:
    """F̂ ← ρ F̂ + (1 − ρ) E[f fᵀ] in place, the expectation over the batch rows of ``f``."""
    f = f.float()
    correlation.mul_(rho).add_(f.T @ f / f.shape[0], alpha=1 - rho)


class DirectPred(Method):
    def __init__(self, cfg: RunConfig, backbone: nn.Module) -> None:
        super().__init__(cfg, backbone)
        self.projector = self.make_projector(cfg.model)
        d = cfg.model.projector_dim
        self.predictor = nn.Linear(d, d, bias=False).requires_grad_(False)  # set, not learned
        add_momentum_target(self)
        self.register_buffer("correlation", torch.zeros(d, d))
        self._steps_seen = 0  # a host counter: no device sync to decide when to set W_p

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        f = torch.cat(self.forward_views(lambda x: self.projector(self.backbone(x)), views))
        self._set_predictor(gather(f.detach()))  # F̂ over the global batch: one W_p
        p1, p2 = self.predictor(f).chunk(2)  # a linear map: one pass for both views
        t1, t2 = self.forward_views(partial(target_forward, self), views)
        return byol_loss(p1, t2) + byol_loss(p2, t1), {}

    @torch.no_grad()
    def _set_predictor(self, f: torch.Tensor) -> None:
        update_correlation(self.correlation, f, self.cfg.rho)
        # The first step always sets W_p: the random init of nn.Linear is no DirectPred predictor.
        if self._steps_seen % self.cfg.update_every == 0:
            w = directpred_predictor(self.correlation, self.cfg.eps)
            self.predictor.weight.copy_(w.to(self.predictor.weight.dtype))
        self._steps_seen += 1

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return target_pairs(self)

    def get_extra_state(self) -> dict[str, int]:
        """The host-side step counter, saved in the state dict so a resumed run continues
        exactly (it decides when W_p is recomputed)."""
        return {"steps_seen": self._steps_seen}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self._steps_seen = int(state["steps_seen"])


SPEC = MethodSpec(
    name="directpred",
    paper="Tian, Chen, Ganguli, Understanding Self-Supervised Learning Dynamics without "
          "Contrastive Pairs, ICML 2021",
    family="distillation",
    config_cls=DirectPredConfig,
    method_cls=DirectPred,
    losses=(directpred_predictor,),
)
