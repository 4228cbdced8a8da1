"""Batched SSL augmentation on uint8 image tensors, with random parameters drawn per sample.

A whole batch is augmented by a handful of tensor ops on its own device, no loop over samples:

1. random resized crop + horizontal flip: one affine grid and one bilinear `grid_sample`;
2. brightness then contrast jitter, factors drawn per sample (1 for samples not selected);
3. optional gaussian blur, sigma per sample: one separable grouped convolution;
4. normalisation by the dataset mean and std.

torchvision's v2 transforms applied to a batch share one random draw across it, which gives every
sample of a batch the same view: not what contrastive and distillation methods need.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from collections.abc import Sequence

_CROP_TRIES = 10  # as torchvision's RandomResizedCrop
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


class AugmentSettings(Protocol):
    """The fields of `sslbench.config.AugmentConfig` this module reads."""

    crop_min_scale: float
    crop_max_scale: float
    crop_min_ratio: float
    crop_max_ratio: float
    hflip_prob: float
    jitter_prob: float
    brightness: float
    contrast: float
    blur_prob: float
    blur_sigma_min: float
    blur_sigma_max: float


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 [B, C, H, W] → float32 normalised by per-channel `mean`/`std` (in [0, 1] units)."""
    scale, shift = _affine_normalisation(mean, std, images.device)
    return images.float().mul_(scale / 255).add_(shift)


def _affine_normalisation(
    mean: Sequence[float], std: Sequence[float], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    # (x - mean) / std as x * scale + shift, shaped [1, C, 1, 1] to broadcast over a batch
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return 1 / std_t, -mean_t / std_t


class BatchAugment:
    """Two calls on the same batch give two independent random views of every image.

    Usage::

        augment = BatchAugment(cfg.augment, mean=info.mean, std=info.std, out_size=28)
        view1, view2 = augment(images, generator), augment(images, generator)
    """

    def __init__(
        self,
        cfg: AugmentSettings,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        out_size: int,
    ) -> None:
        self.cfg = cfg
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.out_size = out_size
        self._normalisation: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """uint8 [B, C, H, W] → float32 [B, C, out_size, out_size], normalised, same device."""
        cfg = self.cfg
        x = self._crop_and_flip(images.float().mul_(1 / 255), generator)
        if cfg.jitter_prob > 0 and (cfg.brightness > 0 or cfg.contrast > 0):
            x = self._jitter(x, generator)
        if cfg.blur_prob > 0:
            x = self._blur(x, generator)
        scale, shift = self._normalisation_on(x.device)
        return x.mul_(scale).add_(shift)

    def _normalisation_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._normalisation:
            self._normalisation[device] = _affine_normalisation(self.mean, self.std, device)
        return self._normalisation[device]

    def _crop_and_flip(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """RandomResizedCrop (scale, log-uniform ratio, up to 10 tries) + flip, one grid_sample."""
        cfg = self.cfg
        batch, channels, height, width = x.shape
        device = x.device
        tries = (batch, _CROP_TRIES)
        area_scale = _uniform(tries, cfg.crop_min_scale, cfg.crop_max_scale, device, generator)
        log_ratio = math.log(cfg.crop_min_ratio), math.log(cfg.crop_max_ratio)
        ratio = _uniform(tries, *log_ratio, device, generator).exp()
        # Box size as a fraction of the image side: w*h = scale*W*H and w/h = ratio (in pixels).
        aspect = width / height
        box_w = torch.sqrt(area_scale * ratio / aspect)
        box_h = torch.sqrt(area_scale / ratio * aspect)
        # First try that fits, as torchvision; when none fits, clamp the first try to the image.
        fits = (box_w <= 1) & (box_h <= 1)
        pick = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
        box_w = box_w.gather(1, pick).squeeze(1).clamp(max=1)
        box_h = box_h.gather(1, pick).squeeze(1).clamp(max=1)
        offsets = _uniform((batch, 3), 0.0, 1.0, device, generator)
        # Box centre in normalised [-1, 1] coordinates, anywhere that keeps the box inside.
        centre_x = (1 - box_w) * (2 * offsets[:, 0] - 1)
        centre_y = (1 - box_h) * (2 * offsets[:, 1] - 1)
        flip = torch.where(offsets[:, 2] < cfg.hflip_prob, -1.0, 1.0)
        theta = torch.zeros(batch, 2, 3, device=device)
        theta[:, 0, 0] = box_w * flip
        theta[:, 0, 2] = centre_x
        theta[:, 1, 1] = box_h
        theta[:, 1, 2] = centre_y
        grid = F.affine_grid(
            theta, [batch, channels, self.out_size, self.out_size], align_corners=False
        )
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _jitter(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Brightness x*b then contrast around the image's gray mean, clamped to [0, 1]."""
        cfg = self.cfg
        batch, channels = x.shape[:2]
        u = _uniform((batch, 3), 0.0, 1.0, x.device, generator)
        selected = u[:, 0] < cfg.jitter_prob
        ones = torch.ones_like(u[:, 1])
        b_lo, c_lo = max(0.0, 1 - cfg.brightness), max(0.0, 1 - cfg.contrast)
        brightness = torch.where(selected, b_lo + (1 + cfg.brightness - b_lo) * u[:, 1], ones)
        contrast = torch.where(selected, c_lo + (1 + cfg.contrast - c_lo) * u[:, 2], ones)
        x = x.mul_(brightness.view(-1, 1, 1, 1)).clamp_(0, 1)
        gray = _to_gray(x) if channels == 3 else x
        mean = gray.mean(dim=(1, 2, 3), keepdim=True)
        contrast = contrast.view(-1, 1, 1, 1)
        # c*x + (1-c)*mean; exactly x when c == 1
        return x.mul_(contrast).add_(mean * (1 - contrast)).clamp_(0, 1)

    def _blur(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Gaussian blur with per-sample sigma: a separable conv with one kernel per image."""
        cfg = self.cfg
        batch, channels, height, width = x.shape
        u = _uniform((batch, 2), 0.0, 1.0, x.device, generator)
        sigma = cfg.blur_sigma_min + (cfg.blur_sigma_max - cfg.blur_sigma_min) * u[:, 1]
        radius = min(math.ceil(3 * cfg.blur_sigma_max), (min(height, width) - 1) // 2)
        taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        kernel = torch.exp(-(taps**2) / (2 * sigma.view(-1, 1) ** 2))
        kernel = kernel / kernel.sum(dim=1, keepdim=True)
        identity = (taps == 0).to(x.dtype).expand_as(kernel)
        kernel = torch.where((u[:, 0] < cfg.blur_prob).view(-1, 1), kernel, identity)
        kernel = kernel.repeat_interleave(channels, dim=0)  # one kernel per (image, channel)
        size = 2 * radius + 1
        flat = x.reshape(1, batch * channels, height, width)
        flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
        flat = F.conv2d(flat, kernel.view(-1, 1, 1, size), groups=batch * channels)
        flat = F.conv2d(flat, kernel.view(-1, 1, size, 1), groups=batch * channels)
        return flat.view(batch, channels, height, width)


def _uniform(
    shape: tuple[int, ...],
    low: float,
    high: float,
    device: torch.device,
    generator: torch.Generator | None,
) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, device=device, generator=generator)


def _to_gray(x: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(_GRAY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)
