"""Barlow Twins (Zbontar et al. 2021): eq. 1–2 by hand and by transcription, invariances,
gradients, and a couple of training steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sslbench.data import load_dataset
from sslbench.errors import ConfigError
from sslbench.losses import barlow_twins
from sslbench.methods import build_method
from sslbench.resolve import resolve_config
from sslbench.train.device import seed_everything
from sslbench.train.loop import pretrain


def transcribed_barlow(z_a: torch.Tensor, z_b: torch.Tensor, lam: float) -> torch.Tensor:
    """Eq. 1 and eq. 2 written out element by element, on mean-centred embeddings."""
    z_a = z_a - z_a.mean(dim=0)
    z_b = z_b - z_b.mean(dim=0)
    n, d = z_a.shape
    loss = torch.zeros((), dtype=z_a.dtype)
    for i in range(d):
        for j in range(d):
            num = sum(z_a[b, i] * z_b[b, j] for b in range(n))
            den = torch.sqrt(sum(z_a[b, i] ** 2 for b in range(n))) * torch.sqrt(
                sum(z_b[b, j] ** 2 for b in range(n)))
            c_ij = num / den
            loss = loss + ((1 - c_ij) ** 2 if i == j else lam * c_ij**2)
    return loss


def test_hand_computed_cases() -> None:
    # Features f1 = (1, 1, −1, −1), f2 = (1, −1, 1, −1): zero mean, unit variance, orthogonal.
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert barlow_twins(z, z.clone(), 0.5).item() == pytest.approx(0.0, abs=1e-8)  # C = I
    assert barlow_twins(z, -z, 0.5).item() == pytest.approx(8.0, rel=1e-4)  # C = −I: 2 · 2²
    # View 2 has f1 twice: C = [[1, 1], [0, 0]] → (1 − 1)² + (1 − 0)² + λ (1² + 0²) = 1 + λ.
    z2 = torch.stack([z[:, 0], z[:, 0]], dim=1)
    assert barlow_twins(z, z2, 0.5).item() == pytest.approx(1.5, rel=1e-4)
    assert barlow_twins(z, z2, 0.5, scale_loss=0.1).item() == pytest.approx(0.15, rel=1e-4)


def test_matches_transcription_of_the_paper() -> None:
    g = torch.Generator().manual_seed(0)
    # Scaled up so that BatchNorm's ε (1e-5 on the variance) is negligible against the data.
    z1 = 10 * torch.randn(6, 4, generator=g, dtype=torch.double)
    z2 = z1 + 5 * torch.randn(6, 4, generator=g, dtype=torch.double)
    for lam in (0.0, 5e-3, 1.0):
        expected = transcribed_barlow(z1, z2, lam)
        assert barlow_twins(z1, z2, lam).item() == pytest.approx(expected.item(), rel=1e-4)


def test_invariances() -> None:
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(16, 5, generator=g), torch.randn(16, 5, generator=g)
    base = barlow_twins(z1, z2, 5e-3)
    perm = torch.randperm(16, generator=g)
    assert torch.allclose(barlow_twins(z1[perm], z2[perm], 5e-3), base, rtol=1e-5)
    # Per-feature affine maps (signs included) cancel in the batch normalisation.
    scale = torch.tensor([0.5, -2.0, 3.0, 1.0, -0.7])
    shift = torch.randn(5, generator=g) * 10
    assert torch.allclose(barlow_twins(z1 * scale + shift, z2 * scale - shift, 5e-3), base,
                          rtol=1e-4)
    # λ weighs the off-diagonal (redundancy) terms.
    assert barlow_twins(z1, z2, 1.0) > base


def test_gradient_check() -> None:
    g = torch.Generator().manual_seed(2)
    z1 = torch.randn(6, 3, generator=g, dtype=torch.double, requires_grad=True)
    z2 = torch.randn(6, 3, generator=g, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: barlow_twins(a, b, 0.1), (z1, z2))


def test_projector_defaults_and_bad_config() -> None:
    cfg = resolve_config("barlow")
    assert (cfg.model.projector_layers, cfg.method.lambda_offdiag) == (3, 5e-3)
    model = build_method(cfg, in_channels=1)
    linears = [m for m in model.projector.net if isinstance(m, torch.nn.Linear)]
    norms = [m for m in model.projector.net if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(linears) == 3 and len(norms) == 2 and linears[-1].bias is None
    with pytest.raises(ConfigError, match=r"method.lambda_offdiag=-1.0 is out of range"):
        resolve_config("barlow", overrides=["method.lambda_offdiag=-1"])


def test_trains_a_few_steps_on_synthetic(tmp_path: Path) -> None:
    cfg = resolve_config("barlow", flags={"data.dataset": "synthetic"},
                         overrides=["train.epochs=1", "train.batch_size=256", "model.width=8"])
    dataset = load_dataset("synthetic", None, seed=0)
    seed_everything(0)
    model = build_method(cfg, dataset.info.channels)
    before = [p.detach().clone() for p in model.parameters()]
    result = pretrain(cfg, dataset, model, torch.device("cpu"), tmp_path, show_progress=False)
    assert result.steps == 4 and torch.isfinite(torch.tensor(result.final_loss))
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
