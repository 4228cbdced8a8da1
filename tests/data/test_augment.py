from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from sslbench.config import AugmentConfig, ViewAugmentConfig, ViewOverrides
from sslbench.data import load_dataset
from sslbench.data.augment import (
    BatchAugment,
    Geometry,
    normalize,
    sample_geometry,
    sample_jitter,
)

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


# -- the distribution of the per-sample parameters (many samples, fixed seed) -----------------

N_DRAWS = 20_000


def geometry(cfg: ViewAugmentConfig, aspect: float = 1.0, seed: int = 0) -> Geometry:
    return sample_geometry(N_DRAWS, cfg, aspect, torch.device("cpu"), seeded(seed))


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.float(), b.float()]))[0, 1])


def test_crop_area_and_aspect_ratio_stay_within_their_bounds() -> None:
    cfg = ViewAugmentConfig(crop_min_scale=0.25, crop_max_scale=0.8, crop_min_ratio=0.75,
                            crop_max_ratio=4 / 3)
    for aspect in (1.0, 1.5):  # square and 3:2 images
        g = geometry(cfg, aspect)
        area = g.box_w * g.box_h
        ratio = g.box_w / g.box_h * aspect  # width / height in pixels
        assert area.min() >= 0.25 - 1e-6 and area.max() <= 0.8 + 1e-6
        assert ratio.min() >= 0.75 - 1e-6 and ratio.max() <= 4 / 3 + 1e-6
        # the box lies inside the image: |centre| + half-size ≤ 1 in [-1, 1] coordinates
        assert (g.centre_x.abs() <= 1 - g.box_w + 1e-6).all()
        assert (g.centre_y.abs() <= 1 - g.box_h + 1e-6).all()


def test_crop_parameters_follow_torchvisions_random_resized_crop() -> None:
    # Same scale/ratio law as torchvision's RandomResizedCrop.get_params (on a large image, so
    # its rounding to whole pixels does not matter): quantiles of the area and of log(ratio).
    from torchvision.transforms import RandomResizedCrop

    cfg = ViewAugmentConfig()  # scale [0.25, 1], ratio [3/4, 4/3]: many first tries do not fit
    g = geometry(cfg)
    ours_area, ours_ratio = g.box_w * g.box_h, (g.box_w / g.box_h).log()
    torch.manual_seed(0)
    side = 1000
    image = torch.empty(1, side, side)
    boxes = torch.tensor([RandomResizedCrop.get_params(image, [0.25, 1.0], [3 / 4, 4 / 3])[2:]
                          for _ in range(4000)], dtype=torch.float64)
    ref_area = boxes[:, 0] * boxes[:, 1] / side**2
    ref_ratio = (boxes[:, 1] / boxes[:, 0]).log()
    q = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=torch.float64)
    torch.testing.assert_close(ours_area.double().quantile(q), ref_area.quantile(q),
                               atol=0.02, rtol=0)
    torch.testing.assert_close(ours_ratio.double().quantile(q), ref_ratio.quantile(q),
                               atol=0.02, rtol=0)


def test_flip_rate_matches_its_probability() -> None:
    for prob in (0.5, 0.2):
        flipped = (geometry(ViewAugmentConfig(hflip_prob=prob)).flip < 0).float()
        assert abs(flipped.mean().item() - prob) < 0.015  # ±4.5 standard errors at 20 000


def test_parameters_are_drawn_independently_per_sample_and_per_view() -> None:
    cfg = ViewAugmentConfig()
    generator = seeded(3)
    first = sample_geometry(N_DRAWS, cfg, 1.0, torch.device("cpu"), generator)
    second = sample_geometry(N_DRAWS, cfg, 1.0, torch.device("cpu"), generator)  # the next view
    area = first.box_w * first.box_h
    pairs = [
        (first.flip[1:], first.flip[:-1]),  # neighbouring samples of a batch
        (area[1:], area[:-1]),
        (first.flip, area),  # flip and crop of one sample
        (first.centre_x, first.centre_y),
        (first.flip, second.flip),  # the two views of one image
        (area, second.box_w * second.box_h),
    ]
    for a, b in pairs:
        assert abs(correlation(a, b)) < 0.04  # ≈ 5.6 standard errors of a zero correlation


def test_jitter_factors_are_uniform_in_their_range_and_applied_with_their_probability() -> None:
    cfg = ViewAugmentConfig(jitter_prob=0.8, brightness=0.4, contrast=0.2)
    jitter = sample_jitter(N_DRAWS, cfg, torch.device("cpu"), seeded())
    selected = jitter.selected
    assert abs(selected.float().mean().item() - 0.8) < 0.015
    assert (jitter.brightness[~selected] == 1).all() and (jitter.contrast[~selected] == 1).all()
    for factor, strength in ((jitter.brightness[selected], 0.4), (jitter.contrast[selected], 0.2)):
        assert factor.min() >= 1 - strength and factor.max() <= 1 + strength
        # uniform: the quartiles sit at a quarter, half and three quarters of the range
        expected = torch.tensor([1 - strength / 2, 1.0, 1 + strength / 2])
        torch.testing.assert_close(factor.quantile(torch.tensor([0.25, 0.5, 0.75])), expected,
                                   atol=0.01, rtol=0)
    assert abs(correlation(jitter.brightness[selected], jitter.contrast[selected])) < 0.04


def test_strong_brightness_never_goes_below_zero() -> None:
    jitter = sample_jitter(N_DRAWS, ViewAugmentConfig(jitter_prob=1.0, brightness=1.0),
                           torch.device("cpu"), seeded())
    assert jitter.brightness.min() >= 0 and jitter.brightness.max() <= 2


def test_the_data_path_applies_the_sampled_flips(images: torch.Tensor) -> None:
    # With full-image crops, a view is the image or its mirror; which one is exactly what
    # sample_geometry draws from the same generator state.
    cfg = replace(NO_JITTER_FULL_CROP, hflip_prob=0.5)
    out = augment(cfg)(images, seeded(7))
    flips = sample_geometry(images.shape[0], cfg.view(1), 1.0, torch.device("cpu"), seeded(7)).flip
    plain = normalize(images, MEAN, STD)
    expected = torch.where((flips < 0).view(-1, 1, 1, 1), plain.flip(-1), plain)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    assert 0 < (flips < 0).sum() < images.shape[0]
