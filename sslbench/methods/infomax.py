"""InfoMax: maximise a variational lower bound on I(g₁(x₁); g₂(x₂)) between two views, the setting
of Tschannen, Djolonga, Rubenstein, Gelly, Lucic, "On Mutual Information Maximization for
Representation Learning", ICLR 2020 (sec. 3, eq. 1):

    max_{g₁, g₂, f}  Î(g₁(x₁); g₂(x₂))  with Î one of InfoNCE, NWJ, DV (``method.bound``) and f a
    bilinear, separable or MLP critic (``method.critic``; see ``sslbench.mi``).

Views (``method.views``): ``halves`` (the paper's: x₁ the top half, x₂ the bottom half of the same
image, two encoders; augmentation off by default) or ``augment`` (two augmented views of the whole
image, one shared encoder; set augment.* keys, e.g. augment.crop_min_scale=0.25, since the
method's defaults switch augmentation off). Encoders (``method.encoder``, see
``sslbench.models.encoders`` and ``sslbench.models.realnvp``): ``mlp`` (the paper's 300-300-100,
the default), ``skip_mlp`` (identity shortcuts, starts as the identity), ``realnvp`` (bijective:
MI is then fixed by the data, yet accuracy moves with the critic), ``tschannen_convnet`` (the
paper's ConvNet) or ``convnet`` (the ``model.*`` backbone). The linear probe reads ``backbone``:
the encoder of the top half applied to full images.

``method.mi_target`` = t replaces the objective by |Î − t| (the paper's sec. 3.3: the encoders
are trained until the estimate reaches t, so that two architectures can be compared at the same
MI estimate). In a distributed run the codes of every worker are gathered before the critic, so
the bound is the one of the global batch.

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
from sslbench.distributed.collectives import gather
from sslbench.methods import MethodSpec
from sslbench.methods.base import Method, StepOutput
from sslbench.mi.bounds import BOUNDS
from sslbench.mi.critics import build_critic
from sslbench.models import build_backbone
from sslbench.models.encoders import HalfEncoder, MLPEncoder, SkipMLP, TschannenConvNet
from sslbench.models.realnvp import RealNVP


@dataclass
class InfoMaxConfig:
    name: str = "infomax"
    bound: Literal["infonce", "nwj", "dv"] = "infonce"
    critic: Literal["bilinear", "separable", "mlp"] = "bilinear"
    encoder: Literal["mlp", "skip_mlp", "realnvp", "tschannen_convnet", "convnet"] = "mlp"
    views: Literal["halves", "augment"] = "halves"
    mi_target: float | None = None  # t: minimise |Î − t| instead of maximising Î (paper: 2, 4)
    separable_hidden_dim: int = bounded(100, lo=1)  # φ and ψ of the separable critic (paper: 100)
    mlp_critic_hidden_dim: int = bounded(200, lo=1)  # the MLP (concat) critic (paper: 200)
    critic_embedding_dim: int = bounded(100, lo=1)  # separable critic's φ, ψ outputs (paper: 100)
    encoder_hidden_dim: int = bounded(300, lo=1)  # MLP encoder (paper: 300, 300)
    embedding_dim: int = bounded(100, lo=1)  # MLP and ConvNet encoder output (paper: 100)
    skip_mlp_layers: int = bounded(5, lo=1)  # paper: 5 of the half's width (392)
    realnvp_layers: int = bounded(30, lo=1)  # coupling layers (paper: 30)
    realnvp_hidden_dim: int = bounded(512, lo=1)  # two hidden layers per coupling (paper: 512)
    realnvp_scale: Literal["none", "softplus"] = "none"  # additive couplings, or affine


def _encoder(cfg: RunConfig, channels: int, height: int, width: int,
             convnet: nn.Module | None = None) -> nn.Module:
    c = cfg.method
    pixels = channels * height * width
    if c.encoder == "realnvp":
        return RealNVP(pixels, c.realnvp_layers, (c.realnvp_hidden_dim,) * 2, c.realnvp_scale)
    if c.encoder == "mlp":
        return MLPEncoder(pixels, c.encoder_hidden_dim, c.embedding_dim)
    if c.encoder == "skip_mlp":
        return SkipMLP(pixels, c.skip_mlp_layers)
    if c.encoder == "tschannen_convnet":
        return TschannenConvNet(channels, out_dim=c.embedding_dim)
    return convnet if convnet is not None else build_backbone(cfg.model, channels)


def mi_objective(estimate: torch.Tensor, target: float | None) -> torch.Tensor:
    """The loss: −Î (maximise the bound), or |Î − t| for a target t (Tschannen et al., sec. 3.3,
    L_t(g₁, g₂) = |I_EST(g₁(X⁽¹⁾); g₂(X⁽²⁾)) − t|)."""
    return -estimate if target is None else (estimate - target).abs()


class InfoMax(Method):
    default_views_mode = None  # with views=halves, two encoders: model.forward_views does not apply

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
                                   separable_hidden_dim=c.separable_hidden_dim,
                                   mlp_hidden_dim=c.mlp_critic_hidden_dim,
                                   embedding_dim=c.critic_embedding_dim)

    def scores(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """[i, j] = f(g₁(x₁ᵢ), g₂(x₂ⱼ)) for this process's batch (view1 gives x₁, view2 x₂)."""
        return self.critic(self.backbone(view1).float(), self.second(view2).float())

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        z1, z2 = self.backbone(views[0]).float(), self.second(views[1]).float()
        # the bound of the global batch: every worker's codes meet every other's in the critic
        estimate = BOUNDS[self.cfg.bound](self.critic(gather(z1), gather(z2)))
        return mi_objective(estimate, self.cfg.mi_target), {"mi_estimate": estimate.detach()}

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
    losses=(*BOUNDS.values(), mi_objective),
    # The paper: Adam, lr 1e-4, batch 128, no augmentation (the views are the two halves).
    defaults={"train.batch_size": 128, "optimizer.lr": 1e-4, "optimizer.weight_decay": 0.0,
              "augment.crop_min_scale": 1.0, "augment.crop_min_ratio": 1.0,
              "augment.crop_max_ratio": 1.0, "augment.hflip_prob": 0.0,
              "augment.jitter_prob": 0.0},
)
