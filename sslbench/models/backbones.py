"""Encoders: a small ConvNet for 28×28 inputs (the CPU default) and ResNet-18 with a CIFAR stem.

Every backbone maps ``[B, C, H, W]`` to a feature vector ``[B, out_dim]`` (global average pool),
and exposes ``out_dim`` so heads can be sized without a dummy forward pass.
"""

from __future__ import annotations

import torch
from torch import nn

from sslbench.config import ModelConfig


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class ConvNet(nn.Module):
    """Three 3×3 conv stages (width w, 2w, 4w) with 2×2 max-pooling between them, then a global
    average pool: a 4w-dimensional feature. About 7.5 M multiply-adds per 28×28 image at w = 32."""

    def __init__(self, in_channels: int, width: int = 32) -> None:
        super().__init__()
        w = width
        self.stages = nn.Sequential(
            nn.Sequential(*_conv_bn_relu(in_channels, w), nn.MaxPool2d(2)),
            nn.Sequential(*_conv_bn_relu(w, 2 * w), nn.MaxPool2d(2)),
            nn.Sequential(*_conv_bn_relu(2 * w, 4 * w)),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = 4 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(x)).flatten(1)


class BasicBlock(nn.Module):
    """ResNet basic block (He et al., 2016): two 3×3 convs and an identity/projection shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn_relu(c_in, c_out, stride),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 with the CIFAR stem (3×3 stride-1 first conv, no max-pool), as used by SimCLR
    and solo-learn for 32×32 images; ``width`` is the channel count of the first stage (64)."""

    def __init__(self, in_channels: int, width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_relu(in_channels, width))
        stages: list[nn.Module] = []
        c_in = width
        for i, c_out in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if i == 0 else 2
            blocks = (BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1))
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = 8 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x))).flatten(1)


def build_backbone(cfg: ModelConfig, in_channels: int) -> nn.Module:
    """The encoder named by ``model.backbone``; its ``out_dim`` is the feature size."""
    if cfg.backbone == "convnet":
        return ConvNet(in_channels, cfg.width)
    return ResNet18(in_channels, cfg.width)
