"""Small encoders for the two-halves task of Tschannen, Djolonga, Rubenstein, Gelly, Lucic, "On
Mutual Information Maximization for Representation Learning", ICLR 2020 (sec. 3), built as the
authors' notebook builds them (google-research, ``mutual_information_representation_learning``):

- ``MLPEncoder``: the MLP 392 → 300 → 300 → 100 of the critic and MI-target experiments;
- ``SkipMLP``: dense layers of the input's width with identity shortcuts, initialised near the
  identity (sec. 3.1, "bias towards hard-to-invert encoders");
- ``TschannenConvNet``: two 5×5 stride-2 convolutions (64, 128 channels), LayerNorm, global
  average pooling, a dense layer to 100 (sec. 3.3);
- ``HalfEncoder``: an encoder applied to one half of full images, so that a linear probe on full
  images evaluates the encoder of the top half, as in the paper.

Dense layers start as Keras' do (the notebook's TensorFlow): Glorot-uniform weights, zero biases.
"""

from __future__ import annotations

import torch
from torch import nn

from sslbench.data.views import image_half


def glorot_init(module: nn.Module) -> nn.Module:
    """Glorot-uniform weights and zero biases on every linear and convolution layer of
    ``module`` (Keras' default initialisation, which the authors' notebook used); ``module``."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


class MLPEncoder(nn.Module):
    """Flatten → Linear → ReLU → Linear → ReLU → Linear to ``out_dim``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = glorot_init(nn.Sequential(
            nn.Flatten(), nn.Linear(in_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim)))
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SkipMLP(nn.Module):
    """``num_layers`` dense layers of the input's width, each with an identity shortcut:
    x ← layer(x) + x, ReLU on all but the last. Weights start at N(0, 10⁻⁴) (truncated at two
    standard deviations) and biases at zero, as in the notebook, so the encoder starts as (almost)
    the identity: invertible and perfectly conditioned."""

    INIT_STD = 1e-4

    def __init__(self, dim: int, num_layers: int = 5) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(num_layers))
        for layer in self.layers:
            nn.init.trunc_normal_(layer.weight, std=self.INIT_STD, a=-2 * self.INIT_STD,
                                  b=2 * self.INIT_STD)
            nn.init.zeros_(layer.bias)
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = layer(x)
            x = x + (h if i == last else torch.relu(h))
        return x


class TschannenConvNet(nn.Module):
    """Conv 5×5/2 (64) → ReLU → conv 5×5/2 (128) → ReLU → LayerNorm over (C, H, W) with a
    per-channel scale and shift → global average pooling → dense to ``out_dim``; "same" padding.
    On a 14 × 28 half the feature maps are 7 × 14 and 4 × 7."""

    def __init__(self, in_channels: int = 1, channels: int = 64, out_dim: int = 100) -> None:
        super().__init__()
        self.net = glorot_init(nn.Sequential(
            nn.Conv2d(in_channels, channels, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 5, stride=2, padding=2), nn.ReLU(),
            # GroupNorm with one group: the statistics over C, H and W, the affine per channel —
            # the notebook's LayerNorm(axes=[1, 2, 3]) with a scale and bias per channel
            nn.GroupNorm(1, 2 * channels, eps=1e-6),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * channels, out_dim)))
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class HalfEncoder(nn.Module):
    """``encoder`` applied to the ``top`` or ``bottom`` half of full images [B, C, H, W]."""

    def __init__(self, encoder: nn.Module, half: str) -> None:
        super().__init__()
        self.encoder, self.half = encoder, half
        self.out_dim: int = encoder.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(image_half(x, self.half))
