from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torchvision

from sslbench.config import ModelConfig
from sslbench.models.backbones import ConvNet, ResNet, build_backbone


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models: one thread is fastest, and far faster while other jobs load the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "depth, reference",
    [("resnet18", torchvision.models.resnet18), ("resnet50", torchvision.models.resnet50)],
)
def test_imagenet_stem_matches_torchvision_without_classifier(depth: str, reference) -> None:
    ours = ResNet(depth, 3, 64, "imagenet")
    theirs = reference()
    assert n_params(ours) == n_params(theirs) - n_params(theirs.fc)
    assert ours.out_dim == theirs.fc.in_features


def test_cifar_stem_swaps_the_7x7_conv_for_a_3x3_and_keeps_resolution() -> None:
    cifar, imagenet = ResNet("resnet18", 3, 64, "cifar"), ResNet("resnet18", 3, 64, "imagenet")
    assert n_params(imagenet) - n_params(cifar) == 64 * 3 * (7 * 7 - 3 * 3)
    x = torch.randn(2, 3, 32, 32)
    assert cifar.stem(x).shape[-1] == 32 and imagenet.stem(x).shape[-1] == 8


@pytest.mark.parametrize(
    "depth, width, out_dim",
    [("resnet18", 64, 512), ("resnet18", 16, 128), ("resnet50", 8, 256), ("resnet50", 128, 4096)],
)
def test_width_multiplier_sets_every_stage(depth: str, width: int, out_dim: int) -> None:
    model = build_backbone(ModelConfig(backbone=depth, width=width), 3)  # type: ignore[arg-type]
    assert model.out_dim == out_dim
    if depth == "resnet50" and width == 128:  # SimCLR's ResNet-50 (2×): about 94 M parameters
        assert 93e6 < n_params(model) < 95e6


@pytest.mark.parametrize(
    "backbone, stem, channels, size",
    [
        ("convnet", "cifar", 1, 28),
        ("resnet18", "cifar", 1, 28),
        ("resnet18", "cifar", 3, 16),
        ("resnet50", "cifar", 3, 16),
        ("resnet18", "imagenet", 3, 64),
        ("resnet50", "imagenet", 1, 64),
    ],
)
def test_forward_gives_out_dim_features(backbone: str, stem: str, channels: int, size: int) -> None:
    cfg = ModelConfig(backbone=backbone, width=8, stem=stem)  # type: ignore[arg-type]
    model = build_backbone(cfg, channels)
    features = model(torch.randn(2, channels, size, size))
    assert features.shape == (2, model.out_dim) and torch.isfinite(features).all()
    features.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_convnet_is_the_small_default() -> None:
    assert isinstance(build_backbone(ModelConfig(width=32), 1), ConvNet)
