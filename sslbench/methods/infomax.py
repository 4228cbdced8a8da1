"""InfoMax: maximise a variational lower bound on I(g₁(x₁); g₂(x₂)) between two views, the setting
of Tschannen, Djolonga, Rubenstein, Gelly, Lucic, "On Mutual Information Maximization for
Representation Learning", ICLR 2020 (sec. 3, eq. 1):

    max_{g₁, g₂, f}  Î(g₁(x₁); g₂(x₂))  with Î one of InfoNCE, NWJ, DV (``method.bound``) and f a
    bilinear, separable or MLP critic (``method.critic``; see ``sslbench.mi``).

Views (``method.views``): ``halves`` (the paper's: x₁ the top half, x₂ the bottom half of the same
image, two encoders; augmentation off by default) or ``augment`` (two augmented views of the whole
image, one shared encoder; set augment.* keys, e.g. augment.crop_min_scale=0.25, since the
method's defaults switch augmentation off). Encoders (``method.encoder``): ``realnvp`` (bijective,
the paper's key case: MI is then fixed by the data, yet accuracy moves with the critic), ``mlp``
or ``convnet`` (``model.*``). The linear probe reads ``backbone``: the encoder of the top half
applied to full images.

Every epoch the EpochMonitor records, on its fixed held-out batch of K images, all three bounds
with the trained critic (``mi_infonce``, ``mi_nwj``, ``mi_dv``), the trained one as
``mi_estimate`` and InfoNCE's ceiling ``mi_log_k`` = log K.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from sslbench.config import RunConfig, bounded
from sslbench.data.registry import get_info
from sslbench.data.views import half_height
from sslbench.methods import MethodSpec
from sslbench.methods.base import Method, StepOutput
from sslbench.mi.bounds import BOUNDS
from sslbench.mi.critics import build_critic
from sslbench.models import build_backbone
from sslbench.models.encoders import HalfEncoder, MLPEncoder
from sslbench.models.realnvp import RealNVP


@dataclass
class InfoMaxConfig:
    name: str = "infomax"
    bound: Literal["infonce", "nwj", "dv"] = "infonce"
    critic: Literal["bilinear", "separable", "mlp"] = "bilinear"
    encoder: Literal["realnvp", "mlp", "convnet"] = "realnvp"
    views: Literal["halves", "augment"] = "halves"
    critic_hidden_dim: int = bounded(200, lo=1)  # separable and MLP critics (paper: 200)
    critic_embedding_dim: int = bounded(100, lo=1)  # separable critic's φ, ψ outputs (paper: 100)
    encoder_hidden_dim: int = bounded(300, lo=1)  # MLP encoder
    embedding_dim: int = bounded(100, lo=1)  # MLP encoder output
    realnvp_layers: int = bounded(4, lo=1)
    realnvp_hidden_dim: int = bounded(256, lo=1)


def _encoder(cfg: RunConfig, channels: int, height: int, width: int,
             convnet: nn.Module | None = None) -> nn.Module:
    c = cfg.method
    pixels = channels * height * width
    if c.encoder == "realnvp":
        return RealNVP(pixels, c.realnvp_layers, c.realnvp_hidden_dim)
    if c.encoder == "mlp":
        return MLPEncoder(pixels, c.encoder_hidden_dim, c.embedding_dim)
    return convnet if convnet is not None else build_backbone(cfg.model, channels)


class InfoMax(Method):
    def __init__(self, cfg: RunConfig, backbone: nn.Module) -> None:
        super().__init__(cfg, backbone)
        c = self.cfg
        info = get_info(cfg.data.dataset)
        size, channels = cfg.data.image_size or info.image_size, info.channels
        if c.views == "halves":  # the backbone is replaced by the encoder of the top half
            self.backbone = HalfEncoder(
                _encoder(cfg, channels, half_height(size, "top"), size, backbone), "top")
            self.second = HalfEncoder(
                _encoder(cfg, channels, half_height(size, "bottom"), size), "bottom")
        else:
            self.backbone = _encoder(cfg, channels, size, size, backbone)
            self.second = self.backbone  # one encoder for both augmented views
        self.critic = build_critic(c.critic, self.backbone.out_dim, self.second.out_dim,
                                   c.critic_hidden_dim, c.critic_embedding_dim)

    def scores(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """[i, j] = f(g₁(x₁ᵢ), g₂(x₂ⱼ)) for the batch (view1 gives x₁, view2 gives x₂)."""
        return self.critic(self.backbone(view1).float(), self.second(view2).float())

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        estimate = BOUNDS[self.cfg.bound](self.scores(*views))
        return -estimate, {"mi_estimate": estimate.detach()}

    @torch.no_grad()
    def mi_estimates(self, view1: torch.Tensor, view2: torch.Tensor) -> dict[str, float]:
        """Every bound with the trained critic on a held-out batch, in nats (see module doc)."""
        scores = self.scores(view1, view2).double()
        out = {f"mi_{name}": bound(scores).item() for name, bound in BOUNDS.items()}
        return out | {"mi_estimate": out[f"mi_{self.cfg.bound}"],
                      "mi_log_k": math.log(scores.shape[0])}


SPEC = MethodSpec(
    name="infomax",
    paper="Tschannen et al., On Mutual Information Maximization for Representation Learning, "
          "ICLR 2020 (bounds: van den Oord et al. 2018; Nguyen, Wainwright, Jordan 2010; "
          "Donsker & Varadhan 1983)",
    family="mutual information",
    config_cls=InfoMaxConfig,
    method_cls=InfoMax,
    losses=tuple(BOUNDS.values()),
    # The paper: Adam, lr 1e-4, batch 128, no augmentation (the views are the two halves).
    defaults={"train.batch_size": 128, "optimizer.lr": 1e-4, "optimizer.weight_decay": 0.0,
              "augment.crop_min_scale": 1.0, "augment.crop_min_ratio": 1.0,
              "augment.crop_max_ratio": 1.0, "augment.hflip_prob": 0.0,
              "augment.jitter_prob": 0.0},
)
