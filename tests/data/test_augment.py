from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from sslbench.config import AugmentConfig, ViewOverrides
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


# --- per-view settings and the colour / geometry ops added for RGB data ----------------------

RGB_MEAN, RGB_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@pytest.fixture(scope="module")
def rgb_images() -> torch.Tensor:
    """64 colourful 32×32 images: smooth random colour fields, away from 0 and 255."""
    low = torch.rand(64, 3, 4, 4, generator=seeded(3))
    field = torch.nn.functional.interpolate(low, size=32, mode="bilinear", align_corners=False)
    return (40 + 175 * field).round().to(torch.uint8)


def rgb(cfg: AugmentConfig, images: torch.Tensor, view: int = 1, seed: int = 0) -> torch.Tensor:
    """Augmented `images` back in [0, 1] pixel units."""
    out = BatchAugment(cfg, mean=RGB_MEAN, std=RGB_STD, out_size=images.shape[-1])(
        images, seeded(seed), view=view
    )
    return out * RGB_STD[0] + RGB_MEAN[0]


def luma(x: torch.Tensor) -> torch.Tensor:
    return 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]


def test_views_use_their_own_settings(images: torch.Tensor) -> None:
    cfg = replace(
        NO_JITTER_FULL_CROP, blur_prob=1.0, blur_sigma_min=1.0, view2=ViewOverrides(blur_prob=0.0)
    )
    aug = augment(cfg)
    assert _high_frequency(aug(images, seeded(), view=1)) < 0.5 * _high_frequency(
        aug(images, seeded(), view=2)
    )
    torch.testing.assert_close(
        aug(images, seeded(), view=2), normalize(images, MEAN, STD), atol=1e-5, rtol=0
    )


def test_settings_object_without_new_keys_is_the_old_augmentation(images: torch.Tensor) -> None:
    class CropOnly:  # an object with only the original keys, as other modules pass
        crop_min_scale, crop_max_scale, crop_min_ratio, crop_max_ratio = 0.5, 1.0, 0.75, 4 / 3
        hflip_prob, jitter_prob, brightness, contrast = 0.5, 0.0, 0.0, 0.0
        blur_prob, blur_sigma_min, blur_sigma_max = 0.0, 0.1, 2.0

    fields = {k: getattr(CropOnly, k) for k in vars(CropOnly) if not k.startswith("_")}
    expected = augment(replace(AugmentConfig(), **fields))(images, seeded(4))
    torch.testing.assert_close(augment(CropOnly())(images, seeded(4)), expected)


def test_solarize_inverts_bright_pixels_of_selected_images(images: torch.Tensor) -> None:
    out = augment(replace(NO_JITTER_FULL_CROP, solarize_prob=1.0))(images, seeded())
    pixels = images.float() / 255
    expected = torch.where(pixels >= 0.5, 1 - pixels, pixels)
    torch.testing.assert_close(out * STD[0] + MEAN[0], expected, atol=1e-5, rtol=0)
    half = augment(replace(NO_JITTER_FULL_CROP, solarize_prob=0.5))(images, seeded())
    changed = (half - normalize(images, MEAN, STD)).flatten(1).abs().amax(1) > 1e-3
    assert 0.2 < changed.float().mean() < 0.8  # per sample, not all or nothing


def test_rotation_turns_images_per_sample() -> None:
    # A vertical bar, turned by ±90° at most: its energy moves off the central column.
    bar = torch.zeros(32, 1, 28, 28, dtype=torch.uint8)
    bar[:, :, 4:24, 12:16] = 255
    cfg = replace(NO_JITTER_FULL_CROP, rotation_prob=1.0, rotation_degrees=90.0)
    out = augment(cfg)(bar, seeded()) * STD[0] + MEAN[0]
    on_column = out[:, 0, :, 12:16].sum(dim=(1, 2)) / out[:, 0].sum(dim=(1, 2))
    assert on_column.std() > 0.1  # angles differ between samples
    assert (on_column < 0.9).float().mean() > 0.5  # most are turned visibly
    assert out[:, 0, :2, :2].abs().max() < 1e-5  # corners brought in from outside are black
    unturned = augment(replace(cfg, rotation_prob=0.0))(bar, seeded())
    torch.testing.assert_close(unturned, normalize(bar, MEAN, STD), atol=1e-5, rtol=0)


def test_grayscale_makes_channels_equal_to_luma(rgb_images: torch.Tensor) -> None:
    out = rgb(replace(NO_JITTER_FULL_CROP, grayscale_prob=1.0), rgb_images)
    plain = rgb_images.float() / 255
    for channel in range(3):
        torch.testing.assert_close(out[:, channel], luma(plain), atol=1e-4, rtol=0)
    none = rgb(replace(NO_JITTER_FULL_CROP, grayscale_prob=0.0), rgb_images)
    torch.testing.assert_close(none, plain, atol=1e-5, rtol=0)


def test_saturation_scales_chroma_and_keeps_luma(rgb_images: torch.Tensor) -> None:
    cfg = replace(
        NO_JITTER_FULL_CROP, jitter_prob=1.0, brightness=0.0, contrast=0.0, saturation=0.9
    )
    out, plain = rgb(cfg, rgb_images), rgb_images.float() / 255
    chroma_out = (out - luma(out)[:, None]).flatten(1).norm(dim=1)
    chroma_in = (plain - luma(plain)[:, None]).flatten(1).norm(dim=1)
    ratio = chroma_out / chroma_in
    assert ratio.min() < 0.5 and ratio.max() > 1.3  # factors drawn per sample in [0.1, 1.9]
    unclamped = ratio < 1  # desaturating never leaves [0, 1]: luma is exactly kept
    torch.testing.assert_close(luma(out)[unclamped], luma(plain)[unclamped], atol=1e-4, rtol=0)


def test_hue_rotates_colours_around_the_gray_axis(rgb_images: torch.Tensor) -> None:
    cfg = replace(NO_JITTER_FULL_CROP, jitter_prob=1.0, brightness=0.0, contrast=0.0, hue=0.5)
    out, plain = rgb(cfg, rgb_images), rgb_images.float() / 255
    changed = (out - plain).flatten(1).abs().amax(1) > 0.05
    assert changed.float().mean() > 0.9
    inside = ((out > 1e-4) & (out < 1 - 1e-4)).flatten(1).all(1)  # no clamping happened
    assert inside.sum() > 5
    torch.testing.assert_close(luma(out)[inside], luma(plain)[inside], atol=1e-4, rtol=0)
    gray = torch.full((8, 3, 32, 32), 90, dtype=torch.uint8)  # gray stays gray
    torch.testing.assert_close(rgb(cfg, gray), gray.float() / 255, atol=1e-4, rtol=0)


def test_colour_ops_leave_one_channel_images_alone(images: torch.Tensor) -> None:
    cfg = replace(
        NO_JITTER_FULL_CROP,
        jitter_prob=1.0,
        brightness=0.0,
        contrast=0.0,
        saturation=0.8,
        hue=0.5,
        grayscale_prob=1.0,
    )
    torch.testing.assert_close(
        augment(cfg)(images, seeded()), normalize(images, MEAN, STD), atol=1e-5, rtol=0
    )


def test_full_rgb_recipe_is_per_sample_and_seeded(rgb_images: torch.Tensor) -> None:
    cfg = replace(
        AugmentConfig(),
        crop_min_scale=0.08,
        saturation=0.4,
        hue=0.1,
        grayscale_prob=0.2,
        blur_prob=0.5,
        solarize_prob=0.2,
        rotation_prob=0.5,
    )
    same = rgb_images[:1].expand(32, -1, -1, -1).contiguous()
    out = rgb(cfg, same).flatten(1)
    assert (torch.cdist(out, out)[~torch.eye(32, dtype=torch.bool)] > 1e-3).all()
    assert torch.equal(rgb(cfg, rgb_images, seed=5), rgb(cfg, rgb_images, seed=5))
    assert not torch.equal(rgb(cfg, rgb_images, seed=5), rgb(cfg, rgb_images, seed=6))
    assert out.min() >= -1e-5 and out.max() <= 1 + 1e-5
