"""Encoders: a small ConvNet for 28×28 inputs (the CPU default) and ResNet-18/50 (He et al. 2016).

Every backbone maps ``[B, C, H, W]`` to a feature vector ``[B, out_dim]`` (global average pool),
and exposes ``out_dim`` so heads can be sized without a dummy forward pass.

The ResNets take a width (channels of the first stage; 64 × the width multiplier of SimCLR's
ResNet-50 (2×), (4×)) and a stem: ``cifar`` (3×3 stride-1 conv, no max-pool, as SimCLR and
solo-learn use for 32×32 images) or ``imagenet`` (7×7 stride-2 conv and a 3×3 stride-2 max-pool,
for 96 px and more). With the ImageNet stem and width 64 they match torchvision's ``resnet18`` /
``resnet50`` (v1.5: stride on the 3×3 conv of a bottleneck) without the classifier.
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


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    """Identity, or a strided 1×1 projection where the shape changes."""
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
    )


class BasicBlock(nn.Module):
    """ResNet basic block: two 3×3 convs and an identity/projection shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn_relu(c_in, planes, stride),
            nn.Conv2d(planes, planes, 3, padding=1, bias=False),
            nn.BatchNorm2d(planes),
        )
        self.shortcut = _shortcut(c_in, planes, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1×1 reduce, 3×3 (strided, as torchvision's v1.5), 1×1 expand ×4
    (ResNet-50/101/152)."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        c_out = planes * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(c_in, planes, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            *_conv_bn_relu(planes, planes, stride),
            nn.Conv2d(planes, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = _shortcut(c_in, c_out, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


# blocks per stage: (block type, blocks in each of the 4 stages)
RESNETS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, ...]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """A stem, four stages of residual blocks (widths w, 2w, 4w, 8w; stride 2 from the second
    stage on) and a global average pool; ``out_dim`` = 8w × the block's expansion."""

    def __init__(
        self,
        depth: str,
        in_channels: int,
        width: int = 64,
        stem: str = "cifar",
    ) -> None:
        super().__init__()
        block, counts = RESNETS[depth]
        if stem == "cifar":
            self.stem = nn.Sequential(*_conv_bn_relu(in_channels, width))
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        stages: list[nn.Module] = []
        c_in = width
        for i, count in enumerate(counts):
            planes = width * 2**i
            blocks: list[nn.Module] = []
            for j in range(count):
                blocks.append(block(c_in, planes, 2 if i > 0 and j == 0 else 1))
                c_in = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = c_in
        for module in self.modules():  # torchvision's initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x))).flatten(1)


def build_backbone(cfg: ModelConfig, in_channels: int) -> nn.Module:
    """The encoder named by ``model.backbone``; its ``out_dim`` is the feature size."""
    if cfg.backbone == "convnet":
        return ConvNet(in_channels, cfg.width)
    return ResNet(cfg.backbone, in_channels, cfg.width, cfg.stem)
