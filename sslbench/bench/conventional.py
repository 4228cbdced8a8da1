"""The conventional SSL input pipeline, as a baseline: torchvision transforms on PIL images, one
sample at a time, in DataLoader worker processes (lightly's and most SSL code's data path).

The transforms mirror a view's :class:`~sslbench.config.ViewAugmentConfig` (RandomResizedCrop,
flip, rotation, ColorJitter, grayscale, blur, solarisation), so that both pipelines do the same
work per image.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from sslbench.config import ViewAugmentConfig


def pil_transform(cfg: ViewAugmentConfig, *, mean: Sequence[float], std: Sequence[float],
                  size: int, channels: int) -> Any:
    """torchvision's transforms for one view with the settings of ``cfg``."""
    from torchvision import transforms as T

    rgb = channels == 3
    steps: list[Any] = [
        T.RandomResizedCrop(size, scale=(cfg.crop_min_scale, cfg.crop_max_scale),
                            ratio=(cfg.crop_min_ratio, cfg.crop_max_ratio)),
        T.RandomHorizontalFlip(cfg.hflip_prob),
    ]
    if cfg.rotation_prob > 0:
        steps.append(T.RandomApply([T.RandomRotation(cfg.rotation_degrees)], cfg.rotation_prob))
    saturation, hue = (cfg.saturation, cfg.hue) if rgb else (0.0, 0.0)
    if cfg.jitter_prob > 0 and (cfg.brightness or cfg.contrast or saturation or hue):
        jitter = T.ColorJitter(cfg.brightness, cfg.contrast, saturation, hue)
        steps.append(T.RandomApply([jitter], cfg.jitter_prob))
    if rgb and cfg.grayscale_prob > 0:
        steps.append(T.RandomGrayscale(cfg.grayscale_prob))
    if cfg.blur_prob > 0:
        radius = min(math.ceil(3 * cfg.blur_sigma_max), (size - 1) // 2)  # as BatchAugment
        blur = T.GaussianBlur(2 * radius + 1, (cfg.blur_sigma_min, cfg.blur_sigma_max))
        steps.append(T.RandomApply([blur], cfg.blur_prob))
    if cfg.solarize_prob > 0:
        steps.append(T.RandomSolarize(128, cfg.solarize_prob))
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)


class TwoViewPILDataset(Dataset):
    """uint8 images [N, C, H, W] served as PIL images, each returned as two transformed views."""

    def __init__(self, images: torch.Tensor, view1: Any, view2: Any) -> None:
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()  # HWC, as PIL wants
        self.view1, self.view2 = view1, view2

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        array = self.images[index]
        image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
        return self.view1(image), self.view2(image)


class LoaderViews:
    """A view maker for the training loop that ignores the batch it is given and serves the next
    (view 1, view 2) batch of a DataLoader instead; the loader starts at the first call, so its
    worker start-up is inside the timed loop, as in an epoch of ordinary training."""

    def __init__(self, dataset: TwoViewPILDataset, batch_size: int, workers: int,
                 seed: int = 0) -> None:
        self.dataset, self.batch_size, self.workers, self.seed = dataset, batch_size, workers, seed
        self._batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._view2: torch.Tensor | None = None

    def __call__(self, images: torch.Tensor, generator: torch.Generator, view: int
                 ) -> torch.Tensor:
        if view == 2:
            assert self._view2 is not None, "view 1 is asked for first"
            out, self._view2 = self._view2, None
            return out
        if self._batches is None:
            loader = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True,
                                num_workers=self.workers, drop_last=True,
                                generator=torch.Generator().manual_seed(self.seed))
            self._batches = iter(loader)
        view1, view2 = (v.to(images.device, non_blocking=True) for v in next(self._batches))
        self._view2 = view2
        return view1
