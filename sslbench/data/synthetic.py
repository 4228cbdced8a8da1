"""A small generated dataset for tests and smoke runs: 10 texture classes, 1×28×28 uint8.

Class `c` is texture kind `c % 5` (horizontal stripes, vertical stripes, square plaid, diagonal
plaid, rings) at period `c // 5` (fine or coarse). Textures fill the image, so a random crop
still shows the class; every kind is its own mirror image, so a horizontal flip keeps it; each
sample draws its own phase, small rotation, ring centre, contrast envelope (a blob at a random
position) and pixel noise. A small ConvNet separates the classes within a few steps.
"""

from __future__ import annotations

import math

import torch

NUM_CLASSES = 10
IMAGE_SIZE = 28
_PERIODS = (3.5, 9.0)  # pixels; even a 2x zoom from a small crop keeps fine below coarse


def make_split(num: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`num` images (uint8 [num, 1, 28, 28]) and labels (int64 [num], classes balanced ±1)."""
    labels = (torch.arange(num) % NUM_CLASSES)[torch.randperm(num, generator=generator)]
    period = torch.tensor(_PERIODS)[labels // 5].view(-1, 1, 1)

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(num, *shape, generator=generator)

    angle = uniform(-0.17, 0.17, 1, 1)  # ±10 degrees
    phase = uniform(0.0, 2 * math.pi, 1, 1)
    centre = uniform(4.0, IMAGE_SIZE - 4.0, 2, 1, 1)  # ring centre and envelope blob
    blob_width = uniform(7.0, 14.0, 1, 1)
    amplitude = uniform(0.55, 0.9, 1, 1)

    coords = torch.arange(IMAGE_SIZE, dtype=torch.float32)
    y, x = coords.view(1, -1, 1), coords.view(1, 1, -1)
    cos, sin = angle.cos(), angle.sin()
    u = x * cos - y * sin  # rotated axes
    v = x * sin + y * cos
    k = 2 * math.pi / period
    d = (u + v) / math.sqrt(2), (u - v) / math.sqrt(2)
    radius = ((x - centre[:, 0]) ** 2 + (y - centre[:, 1]) ** 2).sqrt()
    waves = torch.stack(
        [
            (k * v + phase).sin(),  # horizontal stripes
            (k * u + phase).sin(),  # vertical stripes
            (k * u + phase).sin() * (k * v).sin(),  # square plaid
            (k * d[0] + phase).sin() * (k * d[1]).sin(),  # diagonal plaid
            (k * radius + phase).sin(),  # rings
        ]
    )
    wave = waves[labels % 5, torch.arange(num)]
    blob = (-(radius**2) / (2 * blob_width**2)).exp()
    envelope = 0.5 + 0.5 * blob
    image = 0.5 + 0.5 * amplitude * envelope * wave
    image = image + 0.06 * torch.randn(num, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    images = (image.clamp(0, 1) * 255).round().to(torch.uint8).unsqueeze(1).contiguous()
    return images, labels


def make_synthetic(
    seed: int = 0, num_train: int = 1024, num_test: int = 512
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train images, train labels, test images, test labels; the same `seed` gives the same data."""
    generator = torch.Generator().manual_seed(seed)
    train_images, train_labels = make_split(num_train, generator)
    test_images, test_labels = make_split(num_test, generator)
    return train_images, train_labels, test_images, test_labels
