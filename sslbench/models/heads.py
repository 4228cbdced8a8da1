"""Projector and predictor heads."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """``num_layers`` linear layers; every hidden layer is Linear → BatchNorm1d → ReLU.

    SimCLR's projector is ``MLP(d, h, o, 2)``; BYOL's projector and predictor are the same shape
    (4096 → 256 on ImageNet, scaled down by ``model.projector_*`` for small data).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim),
                       nn.ReLU(inplace=True)]
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim))
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
