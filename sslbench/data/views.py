"""Views that split an image instead of augmenting it: the top and bottom halves of a digit, the
two views of Tschannen et al., "On Mutual Information Maximization for Representation Learning",
ICLR 2020, sec. 3 (MNIST; here any image dataset, Fashion-MNIST offline)."""

from __future__ import annotations

import torch


def half_height(height: int, half: str) -> int:
    """Rows in the ``top`` (⌊H/2⌋) or ``bottom`` (the rest) half of an image of ``height`` rows."""
    return height // 2 if half == "top" else height - height // 2


def image_half(images: torch.Tensor, half: str) -> torch.Tensor:
    """The ``top`` rows [0, H/2) or ``bottom`` rows [H/2, H) of images [B, C, H, W]."""
    if half not in ("top", "bottom"):
        raise ValueError(f"half must be 'top' or 'bottom', not {half!r}")
    split = images.shape[-2] // 2
    return images[..., :split, :] if half == "top" else images[..., split:, :]
