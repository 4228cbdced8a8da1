"""A dataset as an encoder trained on another one takes it: transfer evaluation
(``--eval-dataset``).

The images of every split are converted once, before the protocols run, to the encoder's input:
its number of channels (RGB → gray by the ITU-R 601 luma weights, as torchvision's
``rgb_to_grayscale``; gray → RGB by repeating the channel) and its side (bilinear resizing with
antialiasing), and are normalised by the encoder's mean and std (the statistics of the data it
was pretrained on, as for any input it takes). The labels and splits stay the dataset's own, so
the probes train and test on the target dataset. The unlabeled split (STL-10's) is dropped: no
evaluation reads it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from sslbench.config import DataConfig
from sslbench.data import DatasetInfo, ImageDataset, get_info
from sslbench.errors import UserError

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as torchvision's rgb_to_grayscale
_CHUNK = 4096  # images converted at once: bounded memory for large splits


def encoder_input(data: DataConfig) -> DatasetInfo:
    """The input of an encoder pretrained on ``data`` (its dataset at its image size), without
    loading the data."""
    info = get_info(data.dataset)
    return replace(info, image_size=data.image_size or info.image_size)


def adapt_dataset(dataset: ImageDataset, encoder: DatasetInfo
                  ) -> tuple[ImageDataset, dict[str, Any]]:
    """``dataset`` converted for an encoder whose input is ``encoder`` (see
    :func:`encoder_input`), and the description of what was done (recorded with each
    evaluation)."""
    source = dataset.info
    channels, side = encoder.channels, encoder.image_size
    if source.channels not in (1, 3) or channels not in (1, 3):
        raise UserError(f"cannot adapt {source.channels}-channel images of {source.name} to an "
                        f"encoder of {channels} channels")
    notes: dict[str, Any] = {
        "pretrain_dataset": encoder.name, "eval_dataset": source.name,
        "channels": _channel_note(source.channels, channels),
        "image_size": (f"{source.image_size} → {side} px (bilinear, antialiased)"
                       if source.image_size != side else f"{side} px"),
        "normalisation": f"{encoder.name}'s mean and std (the encoder's input statistics)",
    }
    info = replace(source, channels=channels, image_size=side, mean=encoder.mean,
                   std=encoder.std)

    def convert(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([_convert(images[i:i + _CHUNK], channels, side)
                          for i in range(0, images.shape[0], _CHUNK)])

    adapted = replace(dataset, info=info, train_images=convert(dataset.train_images),
                      test_images=convert(dataset.test_images), unlabeled_images=None)
    return adapted, notes


def _channel_note(have: int, want: int) -> str:
    if have == want:
        return f"{have}"
    return ("3 → 1 (gray: ITU-R 601 luma)" if want == 1
            else "1 → 3 (the gray channel repeated)")


def _convert(images: torch.Tensor, channels: int, side: int) -> torch.Tensor:
    """uint8 [N, C, H, W] → uint8 [N, channels, side, side]."""
    x = images.float()
    if x.shape[1] == 3 and channels == 1:
        x = torch.tensordot(x, torch.tensor(_LUMA), dims=([1], [0])).unsqueeze(1)
    elif x.shape[1] == 1 and channels == 3:
        x = x.repeat(1, 3, 1, 1)
    if x.shape[-2:] != (side, side):
        x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True,
                          align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).contiguous()
