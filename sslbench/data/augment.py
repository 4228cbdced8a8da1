"""Batched SSL augmentation on uint8 image tensors, with random parameters drawn per sample.

A whole batch is augmented by a handful of tensor ops on its own device, no loop over samples:

1. random resized crop + horizontal flip + optional rotation: one affine grid, one `grid_sample`;
2. colour jitter with probability `jitter_prob`: brightness then contrast, then saturation and hue
   (RGB) folded with random grayscale (RGB) into one 3×3 colour matrix per sample;
3. optional gaussian blur, sigma per sample: one separable grouped convolution;
4. optional solarisation (pixels ≥ 0.5 become 1 − pixel);
5. normalisation by the dataset mean and std.

Each view has its own settings (`AugmentConfig.view(1)`, `.view(2)`), so asymmetric recipes such as
BYOL's (blur p = 1.0 / 0.1, solarisation p = 0 / 0.2) are one call each: `augment(x, gen, view=2)`.
Multi-crop (`augment.small_crops`) adds views 3, 4, ...: crops of their own scale range at
`augment.small_crop_size` pixels; `augment.make_views(x, gen)` returns every view of a batch.

torchvision's v2 transforms applied to a batch share one random draw across it, which gives every
sample of a batch the same view: not what contrastive and distillation methods need.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn.functional as F

from sslbench.config import AugmentConfig, ViewAugmentConfig

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sslbench.data.registry import DatasetInfo

_CROP_TRIES = 10  # as torchvision's RandomResizedCrop
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale
# RGB → YIQ (NTSC): Y is the luma above, I and Q the chroma plane that a hue shift rotates.
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))
# inverted once here: torch.linalg.inv on a GPU would synchronise with the host at every call
_YIQ_TO_RGB = tuple(
    map(tuple, torch.linalg.inv(torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)).tolist())
)
_SOLARIZE_THRESHOLD = 0.5  # 128/255 on uint8 images, as BYOL


class AugmentSettings(Protocol):
    """The least a settings object needs (an `AugmentConfig` has more). Keys of
    `ViewAugmentConfig` that an object lacks (rotation, saturation, ...) take their defaults, which
    leave the images unchanged."""

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


def view_settings(cfg: AugmentConfig | AugmentSettings) -> tuple[ViewAugmentConfig, ...]:
    """The settings of every view: per view for an `AugmentConfig` (the two global views, then
    the small crops), else the same settings for two views."""
    if isinstance(cfg, AugmentConfig):
        return tuple(cfg.view(i) for i in range(1, cfg.num_views + 1))
    names = [f.name for f in dataclasses.fields(ViewAugmentConfig)]
    shared = ViewAugmentConfig(**{n: getattr(cfg, n) for n in names if hasattr(cfg, n)})
    return shared, shared


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
        view1, view2 = augment(images, generator, view=1), augment(images, generator, view=2)
        views = augment.make_views(images, generator)  # [view1, view2, small crops...]
    """

    def __init__(
        self,
        cfg: AugmentConfig | AugmentSettings,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        out_size: int,
    ) -> None:
        self.settings = view_settings(cfg)
        small = getattr(cfg, "small_crop_size", None) or max(1, out_size // 2)
        self.out_sizes = (out_size, out_size, *[small] * (len(self.settings) - 2))
        self.mean = tuple(mean)
        self.std = tuple(std)
        self._normalisation: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None, view: int = 1
    ) -> torch.Tensor:
        """uint8 [B, C, H, W] → float32 [B, C, S, S], normalised, same device; `view` (1, 2, or
        3 and on for the small crops) picks whose settings and output side S apply."""
        cfg = self.settings[view - 1]
        rgb = images.shape[1] == 3
        x = self._geometry(images.float().mul_(1 / 255), cfg, generator, self.out_sizes[view - 1])
        jitter = cfg.jitter_prob > 0 and (
            cfg.brightness > 0 or cfg.contrast > 0 or (rgb and (cfg.saturation > 0 or cfg.hue > 0))
        )
        if jitter or (rgb and cfg.grayscale_prob > 0):
            x = self._colour(x, cfg, generator)
        if cfg.blur_prob > 0:
            x = self._blur(x, cfg, generator)
        if cfg.solarize_prob > 0:
            x = self._solarize(x, cfg, generator)
        scale, shift = self._normalisation_on(x.device)
        return x.mul_(scale).add_(shift)

    @property
    def num_views(self) -> int:
        return len(self.settings)

    def make_views(self, images: torch.Tensor, generator: torch.Generator | None = None
                   ) -> list[torch.Tensor]:
        """Every view of the batch, in order: the two global views, then the small crops."""
        return [self(images, generator, view=v) for v in range(1, self.num_views + 1)]

    def _normalisation_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._normalisation:
            self._normalisation[device] = _affine_normalisation(self.mean, self.std, device)
        return self._normalisation[device]

    def _geometry(
        self, x: torch.Tensor, cfg: ViewAugmentConfig, generator: torch.Generator | None,
        out_size: int,
    ) -> torch.Tensor:
        """RandomResizedCrop, flip and rotation (see :func:`sample_geometry`), all in one affine
        map from output to input coordinates and one bilinear `grid_sample`."""
        batch, channels, height, width = x.shape
        g = sample_geometry(batch, cfg, width / height, x.device, generator)
        theta = torch.zeros(batch, 2, 3, device=x.device)
        theta[:, 0, 2] = g.centre_x
        theta[:, 1, 2] = g.centre_y
        # input = centre + diag(box_w * flip, box_h) @ rotation(angle) @ output: the crop,
        # resized, turned by the angle (exact for square images)
        if g.angle is not None:
            cos, sin = g.angle.cos(), g.angle.sin()
            theta[:, 0, 0] = g.box_w * g.flip * cos
            theta[:, 0, 1] = -g.box_w * g.flip * sin
            theta[:, 1, 0] = g.box_h * sin
            theta[:, 1, 1] = g.box_h * cos
        else:
            theta[:, 0, 0] = g.box_w * g.flip
            theta[:, 1, 1] = g.box_h
        grid = F.affine_grid(
            theta, [batch, channels, out_size, out_size], align_corners=False
        )
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if g.angle is not None:  # black where a turned crop reaches outside the image
            inside = (grid.abs() <= 1).all(dim=-1, keepdim=True).permute(0, 3, 1, 2)
            out = out.mul_(inside)
        return out

    def _colour(
        self, x: torch.Tensor, cfg: ViewAugmentConfig, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Brightness x*b, contrast around the image's gray mean, then (RGB) one colour matrix
        per sample for saturation, hue and grayscale; clamped to [0, 1] after each stage."""
        batch, channels = x.shape[:2]
        jitter = sample_jitter(batch, cfg, x.device, generator)
        if cfg.brightness > 0 or cfg.contrast > 0:
            contrast = jitter.contrast.view(-1, 1, 1, 1)
            x = x.mul_(jitter.brightness.view(-1, 1, 1, 1)).clamp_(0, 1)
            gray = _to_gray(x) if channels == 3 else x
            mean = gray.mean(dim=(1, 2, 3), keepdim=True)
            # c*x + (1-c)*mean; exactly x when c == 1
            x = x.mul_(contrast).add_(mean * (1 - contrast)).clamp_(0, 1)
        if channels != 3 or (cfg.saturation == 0 and cfg.hue == 0 and cfg.grayscale_prob == 0):
            return x
        matrix = _colour_matrix(cfg, jitter.selected, generator)
        flat = torch.bmm(matrix, x.reshape(batch, 3, -1)).clamp_(0, 1)
        return flat.view_as(x)

    def _blur(
        self, x: torch.Tensor, cfg: ViewAugmentConfig, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Gaussian blur with per-sample sigma: a separable conv with one kernel per image."""
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

    def _solarize(
        self, x: torch.Tensor, cfg: ViewAugmentConfig, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Invert the pixels at or above the threshold, in the images selected with
        `solarize_prob`."""
        selected = _uniform((x.shape[0],), 0.0, 1.0, x.device, generator) < cfg.solarize_prob
        invert = selected.view(-1, 1, 1, 1) & (x >= _SOLARIZE_THRESHOLD)
        return torch.where(invert, 1 - x, x)


def _factor(u: torch.Tensor, strength: float, selected: torch.Tensor) -> torch.Tensor:
    """A jitter factor uniform in [max(0, 1 - strength), 1 + strength]; 1 where not selected."""
    low = max(0.0, 1 - strength)
    return torch.where(selected, low + (1 + strength - low) * u, torch.ones_like(u))


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Per-sample crop/flip/rotation parameters, [B] tensors. Box sides are fractions of the
    image's width and height; the centre is in normalised [-1, 1] coordinates; `flip` is -1
    (mirrored) or 1; `angle` in radians, None when the view has no rotation."""

    box_w: torch.Tensor
    box_h: torch.Tensor
    centre_x: torch.Tensor
    centre_y: torch.Tensor
    flip: torch.Tensor
    angle: torch.Tensor | None


def sample_geometry(
    batch: int,
    cfg: ViewAugmentConfig,
    aspect: float,
    device: torch.device,
    generator: torch.Generator | None,
) -> Geometry:
    """RandomResizedCrop's parameters (Szegedy et al. 2015; torchvision's algorithm), per sample:
    area fraction uniform in [crop_min_scale, crop_max_scale], aspect ratio log-uniform in
    [crop_min_ratio, crop_max_ratio], the first of 10 tries that fits (else the first try clamped
    to the image), a uniform position inside the image; a flip with `hflip_prob`; a rotation by
    an angle uniform in ±rotation_degrees with `rotation_prob`. `aspect` is width / height."""
    tries = (batch, _CROP_TRIES)
    area_scale = _uniform(tries, cfg.crop_min_scale, cfg.crop_max_scale, device, generator)
    log_ratio = math.log(cfg.crop_min_ratio), math.log(cfg.crop_max_ratio)
    ratio = _uniform(tries, *log_ratio, device, generator).exp()
    # Box size as a fraction of the image side: w*h = scale*W*H and w/h = ratio (in pixels).
    box_w = torch.sqrt(area_scale * ratio / aspect)
    box_h = torch.sqrt(area_scale / ratio * aspect)
    fits = (box_w <= 1) & (box_h <= 1)
    pick = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    box_w = box_w.gather(1, pick).squeeze(1).clamp(max=1)
    box_h = box_h.gather(1, pick).squeeze(1).clamp(max=1)
    offsets = _uniform((batch, 3), 0.0, 1.0, device, generator)
    angle = None
    if cfg.rotation_prob > 0:
        u = _uniform((batch, 2), 0.0, 1.0, device, generator)
        angle = math.radians(cfg.rotation_degrees) * (2 * u[:, 1] - 1)
        angle = torch.where(u[:, 0] < cfg.rotation_prob, angle, torch.zeros_like(angle))
    return Geometry(
        box_w=box_w,
        box_h=box_h,
        # anywhere that keeps the box inside the image
        centre_x=(1 - box_w) * (2 * offsets[:, 0] - 1),
        centre_y=(1 - box_h) * (2 * offsets[:, 1] - 1),
        flip=torch.where(offsets[:, 2] < cfg.hflip_prob, -1.0, 1.0),
        angle=angle,
    )


@dataclasses.dataclass(frozen=True)
class Jitter:
    """Per-sample colour-jitter draw, [B] tensors: whether the sample is jittered, and its
    brightness and contrast factors (1 where not selected)."""

    selected: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor


def sample_jitter(
    batch: int, cfg: ViewAugmentConfig, device: torch.device, generator: torch.Generator | None
) -> Jitter:
    """ColorJitter's brightness and contrast factors, uniform in [max(0, 1 - s), 1 + s] for
    strength s, applied to a sample with probability `jitter_prob` (torchvision's RandomApply)."""
    u = _uniform((batch, 3), 0.0, 1.0, device, generator)
    selected = u[:, 0] < cfg.jitter_prob
    return Jitter(
        selected=selected,
        brightness=_factor(u[:, 1], cfg.brightness, selected),
        contrast=_factor(u[:, 2], cfg.contrast, selected),
    )


def _colour_matrix(
    cfg: ViewAugmentConfig, selected: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Per-sample 3×3 RGB matrices [B, 3, 3]: grayscale @ hue @ saturation.

    Saturation blends with the luma image: s·I + (1 − s)·1wᵀ (torchvision's adjust_saturation).
    Hue rotates the chroma plane of YIQ by 2π·h around the gray axis, a linear stand-in for
    torchvision's HSV hue shift (as NVIDIA DALI does): gray pixels and luma are kept. Grayscale
    is 1wᵀ. Samples not selected get the identity for that stage.
    """
    batch, device = selected.shape[0], selected.device
    u = _uniform((batch, 3), 0.0, 1.0, device, generator)
    eye = torch.eye(3, device=device).expand(batch, 3, 3)
    luma = _constant(_GRAY_WEIGHTS, device, torch.float32).view(1, 1, 3).expand(batch, 3, 3)
    saturation = _factor(u[:, 0], cfg.saturation, selected).view(-1, 1, 1)
    matrix = saturation * eye + (1 - saturation) * luma
    if cfg.hue > 0:
        angle = 2 * math.pi * cfg.hue * (2 * u[:, 1] - 1) * selected
        to_yiq, to_rgb = (_constant(m, device, torch.float32) for m in (_RGB_TO_YIQ, _YIQ_TO_RGB))
        rotation = torch.zeros(batch, 3, 3, device=device)
        rotation[:, 0, 0] = 1
        rotation[:, 1, 1], rotation[:, 1, 2] = angle.cos(), -angle.sin()
        rotation[:, 2, 1], rotation[:, 2, 2] = angle.sin(), angle.cos()
        matrix = to_rgb @ rotation @ to_yiq @ matrix
    gray = (u[:, 2] < cfg.grayscale_prob).view(-1, 1, 1)
    return torch.where(gray, luma @ matrix, matrix)


def _uniform(
    shape: tuple[int, ...],
    low: float,
    high: float,
    device: torch.device,
    generator: torch.Generator | None,
) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, device=device, generator=generator)


@functools.lru_cache(maxsize=64)
def _constant(values: Sequence[Any], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A constant tensor made once per device: `torch.tensor(..., device="cuda")` copies from
    pageable host memory, which waits for the stream (a host sync) at every call."""
    return torch.tensor(values, dtype=dtype, device=device)


def _to_gray(x: torch.Tensor) -> torch.Tensor:
    weights = _constant(_GRAY_WEIGHTS, x.device, x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def pretraining_augment(cfg: AugmentConfig, info: DatasetInfo) -> BatchAugment:
    """The views of pretraining: ``cfg``'s settings, the two global views at ``augment.crop_size``
    (default: the images' own size, e.g. 224 px crops of images stored at 256 px)."""
    return BatchAugment(cfg, mean=info.mean, std=info.std,
                        out_size=cfg.crop_size or info.image_size)
