"""ER: maximise the entropy-and-reconstruction bound on I(Z₁; Z₂) (Rodríguez-Gálvez, Blaas,
Rodríguez, Tarokh, "The Role of Entropy and Reconstruction in Multi-View Self-Supervised
Learning", ICML 2023, eq. 3 and sec. 4):

    I(Z₁; Z₂) ≥ H(Z₂) + E[log q(Z₂ | Z₁)],

H by KDE on the batch's projections (``method.kernel``, ``method.bandwidth``; see
``sslbench.mi.entropy``) and q a von Mises–Fisher (cosine term, κ = ``method.kappa``) or a
Gaussian (MSE term, σ = ``method.sigma``) centred on the other view's projection. Symmetrised
over the two views; the loss is minus the bound, in nats. In a distributed run the projections of
every worker are gathered first: the KDE (and its bandwidth) sees the global batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from sslbench.config import RunConfig, bounded, check_bandwidth
from sslbench.distributed.collectives import gather
from sslbench.methods import MethodSpec
from sslbench.methods.base import Method, StepOutput
from sslbench.mi.entropy import BANDWIDTH_RULES, er_bound


@dataclass
class ERConfig:
    name: str = "er"
    kernel: Literal["vmf", "gaussian"] = "vmf"
    bandwidth: str = "silverman"  # silverman, scott or a number (the vMF κ is 1/h²)
    reconstruction: Literal["vmf", "gaussian"] = "vmf"
    kappa: float = bounded(10.0, lo=0.0, lo_open=True)  # of the vMF q
    sigma: float = bounded(1.0, lo=0.0, lo_open=True)  # of the Gaussian q

    def validate(self) -> None:
        check_bandwidth("method.bandwidth", self.bandwidth)


def er_loss(z1: torch.Tensor, z2: torch.Tensor, cfg: ERConfig) -> tuple[torch.Tensor,
                                                                       dict[str, torch.Tensor]]:
    """−½ [ER(Z₂ | Z₁) + ER(Z₁ | Z₂)] and the mean entropy / reconstruction terms."""
    bandwidth = cfg.bandwidth if cfg.bandwidth in BANDWIDTH_RULES else float(cfg.bandwidth)
    kw = {"reconstruction": cfg.reconstruction, "kernel": cfg.kernel, "bandwidth": bandwidth,
          "kappa": cfg.kappa, "sigma": cfg.sigma}
    a, b = er_bound(z1, z2, **kw), er_bound(z2, z1, **kw)
    logs = {k: ((a[k] + b[k]) / 2).detach() for k in a}
    return -(a["bound"] + b["bound"]) / 2, logs


class ER(Method):
    def __init__(self, cfg: RunConfig, backbone: nn.Module) -> None:
        super().__init__(cfg, backbone)
        self.projector = self.make_projector(cfg.model)

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        z1, z2 = self.forward_views(lambda x: self.projector(self.backbone(x)).float(), views)
        return er_loss(gather(z1), gather(z2), self.cfg)


SPEC = MethodSpec(
    name="er",
    paper="Rodríguez-Gálvez et al., The Role of Entropy and Reconstruction in Multi-View "
          "Self-Supervised Learning, ICML 2023",
    family="mutual information",
    config_cls=ERConfig,
    method_cls=ER,
    losses=(er_loss,),
)
