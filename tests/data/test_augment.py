from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from sslbench.config import AugmentConfig
from sslbench.data import load_dataset
from sslbench.data.augment import BatchAugment, normalize

MEAN, STD = (0.2860,), (0.3530,)
NO_JITTER_FULL_CROP = AugmentConfig(
    crop_min_scale=1.0,
    crop_max_scale=1.0,
    crop_min_ratio=1.0,
    crop_max_ratio=1.0,
    hflip_prob=0.0,
    jitter_prob=0.0,
)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return load_dataset("synthetic").train_images[:64]


def augment(cfg: AugmentConfig = AugmentConfig(), out_size: int = 28) -> BatchAugment:
    return BatchAugment(cfg, mean=MEAN, std=STD, out_size=out_size)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_output_shape_dtype_device(images: torch.Tensor) -> None:
    out = augment(replace(AugmentConfig(), blur_prob=0.5), out_size=24)(images, seeded())
    assert out.shape == (64, 1, 24, 24) and out.dtype == torch.float32
    assert out.device == images.device and torch.isfinite(out).all()


def test_each_sample_gets_its_own_view() -> None:
    same = load_dataset("synthetic").train_images[:1].expand(32, -1, -1, -1).contiguous()
    out = augment()(same, seeded()).flatten(1)
    distances = torch.cdist(out, out)
    off_diagonal = distances[~torch.eye(32, dtype=torch.bool)]
    assert (off_diagonal > 1e-3).all()


def test_seeded_is_deterministic_and_calls_differ(images: torch.Tensor) -> None:
    aug = augment(replace(AugmentConfig(), blur_prob=0.5))
    assert torch.equal(aug(images, seeded(1)), aug(images, seeded(1)))
    generator = seeded(1)
    assert not torch.allclose(aug(images, generator), aug(images, generator))


def test_identity_settings_reproduce_normalize(images: torch.Tensor) -> None:
    out = augment(NO_JITTER_FULL_CROP)(images, seeded())
    torch.testing.assert_close(out, normalize(images, MEAN, STD), atol=1e-5, rtol=0)


def test_flip_with_full_crop_mirrors_normalize(images: torch.Tensor) -> None:
    out = augment(replace(NO_JITTER_FULL_CROP, hflip_prob=1.0))(images, seeded())
    torch.testing.assert_close(out, normalize(images, MEAN, STD).flip(-1), atol=1e-5, rtol=0)


def test_crops_zoom_in(images: torch.Tensor) -> None:
    # A quarter-area crop upscaled shows coarser texture: less energy between neighbours.
    small = replace(NO_JITTER_FULL_CROP, crop_min_scale=0.25, crop_max_scale=0.25)
    assert _high_frequency(augment(small)(images, seeded())) < _high_frequency(
        normalize(images, MEAN, STD)
    )


def test_jitter_changes_intensity_and_stays_in_range(images: torch.Tensor) -> None:
    cfg = replace(NO_JITTER_FULL_CROP, jitter_prob=1.0)
    out = augment(cfg)(images, seeded())
    plain = normalize(images, MEAN, STD)
    pixels = out * STD[0] + MEAN[0]
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6
    changed = (out - plain).flatten(1).abs().amax(1) > 1e-3
    assert changed.float().mean() > 0.9


def test_blur_reduces_high_frequency_energy(images: torch.Tensor) -> None:
    sharp = augment(NO_JITTER_FULL_CROP)(images, seeded())
    blurred = augment(replace(NO_JITTER_FULL_CROP, blur_prob=1.0, blur_sigma_min=1.0))(
        images, seeded()
    )
    assert _high_frequency(blurred) < 0.5 * _high_frequency(sharp)


def _high_frequency(x: torch.Tensor) -> float:
    """Mean squared difference between horizontal and vertical neighbours."""
    dx, dy = x.diff(dim=-1), x.diff(dim=-2)
    return (dx.pow(2).mean() + dy.pow(2).mean()).item()
