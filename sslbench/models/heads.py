"""Projector and predictor heads: one MLP, shaped by each method's paper."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """``num_layers`` linear layers; every hidden layer is Linear → BatchNorm1d → ReLU, or
    Linear → ReLU with ``hidden_bn`` false (the Linear then has a bias): SimCLR's g(h) =
    W2 σ(W1 h) (Chen et al. 2020, §2) as solo-learn builds it, no BN (``model.projector_bn``).

    The papers' heads differ only in their last layer, so that is what the options shape:

    - ``last_bias``: bias of the last Linear (Barlow Twins' and VICReg's last layer have none);
    - ``last_bn``: a BatchNorm1d after the last Linear (SimSiam, MoCo v3), with learnable affine
      parameters unless ``last_bn_affine`` is false.

    SimCLR's projector is ``MLP(d, h, o, 2)``; BYOL's projector and predictor are the same shape
    (4096 → 256 on ImageNet). Barlow Twins' projector is ``MLP(d, 8192, 8192, 3,
    last_bias=False)`` on ImageNet and VICReg's expander the same; small data scales the widths
    down through ``model.projector_*``. Hidden Linears have no bias: the BatchNorm after them
    would cancel it.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2, *,
                 last_bias: bool = True, last_bn: bool = False,
                 last_bn_affine: bool = True, hidden_bn: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim, bias=not hidden_bn))
            if hidden_bn:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim, bias=last_bias and not last_bn))
        if last_bn:
            layers.append(nn.BatchNorm1d(out_dim, affine=last_bn_affine))
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
