"""VICReg (Bardes, Ponce, LeCun 2022): each term against the paper's eqs. 1–6, the reference
normalisation, invariances, gradients, and a couple of training steps."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sslbench.data import load_dataset
from sslbench.errors import ConfigError
from sslbench.losses import covariance_loss, invariance_loss, variance_loss, vicreg
from sslbench.methods import build_method
from sslbench.resolve import resolve_config
from sslbench.train.device import seed_everything
from sslbench.train.loop import pretrain

# Orthogonal, centred columns: decorrelated features with unbiased variance 4/3.
HADAMARD = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])


def paper_terms(z: torch.Tensor, z2: torch.Tensor, gamma: float, eps: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """s(Z, Z′) (eq. 5), v(Z) (eqs. 1–2) and c(Z) (eqs. 3–4) written out with loops."""
    n, d = z.shape
    s = sum(sum((z[i, j] - z2[i, j]) ** 2 for j in range(d)) for i in range(n)) / n
    mean = [sum(z[i, j] for i in range(n)) / n for j in range(d)]
    cov = [[sum((z[i, a] - mean[a]) * (z[i, b] - mean[b]) for i in range(n)) / (n - 1)
            for b in range(d)] for a in range(d)]
    v = sum(max(0.0, gamma - math.sqrt(cov[j][j] + eps)) for j in range(d)) / d
    c = sum(cov[a][b] ** 2 for a in range(d) for b in range(d) if a != b) / d
    return s, v, c


def test_variance_term() -> None:
    assert variance_loss(2 * HADAMARD).item() == 0.0  # std ≥ γ everywhere: no penalty
    assert variance_loss(torch.ones(5, 3)).item() == pytest.approx(1 - math.sqrt(1e-4))
    # std = sqrt(4/3) · 0.3 for both features, below γ = 1: hinge 1 − that, averaged over d.
    expected = 1 - math.sqrt(0.09 * 4 / 3 + 1e-4)
    assert variance_loss(0.3 * HADAMARD).item() == pytest.approx(expected, rel=1e-6)
    assert variance_loss(0.3 * HADAMARD, gamma=0.1).item() == 0.0


def test_covariance_term() -> None:
    assert covariance_loss(HADAMARD).item() == 0.0  # decorrelated features
    x = torch.tensor([1.0, 2.0, 4.0, 7.0])
    var = x.var().item()
    # Two equal features: C = var · [[1, 1], [1, 1]] → (2 var²) / d with d = 2.
    assert covariance_loss(torch.stack([x, x], 1)).item() == pytest.approx(var**2, rel=1e-6)


def test_invariance_term_is_mse_over_all_elements() -> None:
    z1, z2 = torch.zeros(2, 2), torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    assert invariance_loss(z1, z2).item() == pytest.approx(14 / 4)


def test_matches_eq6_with_the_reference_normalisation() -> None:
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(7, 5, generator=g, dtype=torch.double)
    z2 = z1 + 0.3 * torch.randn(7, 5, generator=g, dtype=torch.double)
    lam, mu, nu, gamma, eps = 25.0, 25.0, 1.0, 1.0, 1e-4
    s, v1, c1 = paper_terms(z1, z2, gamma, eps)
    _, v2, c2 = paper_terms(z2, z1, gamma, eps)
    d = z1.shape[1]
    assert invariance_loss(z1, z2).item() == pytest.approx(s / d)
    assert variance_loss(z1, gamma, eps).item() == pytest.approx(v1)
    assert covariance_loss(z2).item() == pytest.approx(c2)
    expected = lam * s / d + mu * (v1 + v2) / 2 + nu * (c1 + c2)
    assert vicreg(z1, z2, lam, mu, nu, gamma, eps).item() == pytest.approx(expected)


def test_invariances() -> None:
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(12, 4, generator=g), torch.randn(12, 4, generator=g)
    base = vicreg(z1, z2)
    perm = torch.randperm(12, generator=g)
    assert torch.allclose(vicreg(z1[perm], z2[perm]), base, rtol=1e-5)
    assert torch.allclose(vicreg(z2, z1), base, rtol=1e-5)  # symmetric in the views
    shift = torch.randn(4, generator=g)  # the same shift on both views changes no term
    assert torch.allclose(vicreg(z1 + shift, z2 + shift), base, rtol=1e-4)


def test_gradient_check() -> None:
    g = torch.Generator().manual_seed(2)
    # Small values: every feature is below γ, so the hinge is active and differentiable.
    z1 = (0.3 * torch.randn(6, 3, generator=g, dtype=torch.double)).requires_grad_()
    z2 = (0.3 * torch.randn(6, 3, generator=g, dtype=torch.double)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: vicreg(a, b), (z1, z2))


def test_defaults_and_bad_config() -> None:
    cfg = resolve_config("vicreg")
    m = cfg.method
    assert (m.invariance_weight, m.variance_weight, m.covariance_weight) == (25.0, 25.0, 1.0)
    assert (m.variance_target, cfg.model.projector_layers) == (1.0, 3)
    with pytest.raises(ConfigError, match=r"method.variance_target=0.0 is out of range"):
        resolve_config("vicreg", overrides=["method.variance_target=0"])


def test_trains_a_few_steps_on_synthetic(tmp_path: Path) -> None:
    cfg = resolve_config("vicreg", flags={"data.dataset": "synthetic"},
                         overrides=["train.epochs=1", "train.batch_size=256", "model.width=8"])
    dataset = load_dataset("synthetic", None, seed=0)
    seed_everything(0)
    model = build_method(cfg, dataset.info.channels)
    before = [p.detach().clone() for p in model.parameters()]
    result = pretrain(cfg, dataset, model, torch.device("cpu"), tmp_path, show_progress=False)
    assert result.steps == 4 and torch.isfinite(torch.tensor(result.final_loss))
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
