from __future__ import annotations

import torch

from sslbench.data import load_dataset


def test_shapes_balance_and_determinism() -> None:
    data = load_dataset("synthetic", seed=3)
    assert data.source == "synthetic(seed=3)"
    assert data.train_images.shape == (1024, 1, 28, 28)
    assert data.test_images.shape == (512, 1, 28, 28)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    for labels in (data.train_labels, data.test_labels):
        counts = labels.bincount(minlength=10)
        assert len(counts) == 10 and counts.max() - counts.min() <= 1

    again, other = load_dataset("synthetic", seed=3), load_dataset("synthetic", seed=4)
    assert torch.equal(data.train_images, again.train_images)
    assert torch.equal(data.test_labels, again.test_labels)
    assert not torch.equal(data.train_images, other.train_images)
    assert not torch.equal(data.train_images[:512], data.test_images)


def test_classes_differ_more_than_samples_within_them() -> None:
    # The nearest class mean in a texture feature (power spectrum) beats chance by far.
    data = load_dataset("synthetic")

    def spectrum(images: torch.Tensor) -> torch.Tensor:
        pixels = images.float().squeeze(1) / 255
        power = torch.fft.rfft2(pixels - pixels.mean(dim=(1, 2), keepdim=True)).abs()
        return (power / power.flatten(1).norm(dim=1).view(-1, 1, 1)).flatten(1)

    train, test = spectrum(data.train_images), spectrum(data.test_images)
    means = torch.stack([train[data.train_labels == c].mean(0) for c in range(10)])
    accuracy = ((test @ means.T).argmax(1) == data.test_labels).float().mean().item()
    assert accuracy > 0.5
