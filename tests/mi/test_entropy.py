"""KDE entropy against closed forms: Gaussians on R^d, the uniform and vMF laws on the sphere."""

from __future__ import annotations

import math

import pytest
import torch

from sslbench.config import check_bandwidth
from sslbench.errors import ConfigError
from sslbench.mi.entropy import (
    er_bound,
    gaussian_reconstruction,
    kde_conditional_entropy,
    kde_entropy,
    log_bessel_iv,
    log_vmf_normaliser,
    select_bandwidth,
)

GEN = torch.Generator().manual_seed(0)


def _gaussian_entropy(dim: int, sigma: float) -> float:
    return 0.5 * dim * math.log(2 * math.pi * math.e * sigma**2)


@pytest.mark.parametrize("dim,sigma", [(1, 1.0), (2, 0.5), (3, 2.0)])
def test_kde_entropy_of_a_gaussian_is_close_to_the_closed_form(dim: int, sigma: float) -> None:
    z = torch.randn(2000, dim, generator=GEN, dtype=torch.float64) * sigma
    assert kde_entropy(z).item() == pytest.approx(_gaussian_entropy(dim, sigma), abs=0.1 * dim)


def test_entropy_moves_by_d_log_s_under_scaling() -> None:
    z = torch.randn(500, 3, generator=GEN, dtype=torch.float64)
    assert (kde_entropy(4 * z) - kde_entropy(z)).item() == pytest.approx(3 * math.log(4), abs=1e-6)


def test_resubstitution_is_capped_by_log_n() -> None:
    z = torch.randn(64, 2, generator=GEN, dtype=torch.float64) * 1e3  # points far apart
    h = 0.5
    cap = math.log(64) + math.log(2 * math.pi * h * h)  # log N − log k_h(0), d = 2
    assert kde_entropy(z, bandwidth=h, leave_one_out=False).item() == pytest.approx(cap, abs=1e-6)


def test_bandwidth_rules() -> None:
    z = torch.randn(1000, 4, generator=GEN)
    scott = select_bandwidth(z, "scott")
    assert scott == pytest.approx(z.std(dim=0).mean().item() * 1000 ** (-1 / 8), rel=1e-4)
    assert select_bandwidth(z, "silverman") == pytest.approx((4 / 6) ** (1 / 8) * scott)
    assert select_bandwidth(z, 0.3) == 0.3
    check_bandwidth("eval.diagnostics.kde_bandwidth", "0.2")
    for bad in ("wide", "-1", "nan"):
        with pytest.raises(ConfigError, match="kde_bandwidth"):
            check_bandwidth("eval.diagnostics.kde_bandwidth", bad)


def test_log_bessel_and_vmf_normaliser_closed_forms() -> None:
    # I_{1/2}(x) = sqrt(2/(πx)) sinh x; on S², C_3(κ) = κ / (4π sinh κ)
    for x in (0.5, 3.0, 40.0):
        assert log_bessel_iv(0.5, x) == pytest.approx(
            0.5 * math.log(2 / (math.pi * x)) + math.log(math.sinh(x)), abs=1e-6)
        assert log_vmf_normaliser(3, x) == pytest.approx(
            math.log(x / (4 * math.pi * math.sinh(x))), abs=1e-6)
    assert log_bessel_iv(0.0, 1.0) == pytest.approx(math.log(1.2660658777520082), abs=1e-7)
    # κ → 0: the uniform density on S^{d−1}, 1/|S^{d−1}|
    assert log_vmf_normaliser(3, 1e-6) == pytest.approx(-math.log(4 * math.pi), abs=1e-5)


def test_vmf_kde_entropy_of_the_uniform_sphere() -> None:
    u = torch.randn(3000, 3, generator=GEN, dtype=torch.float64)
    assert kde_entropy(u, "vmf").item() == pytest.approx(math.log(4 * math.pi), abs=0.1)


def test_conditional_entropy_of_correlated_gaussians() -> None:
    # H(V | W) = ½ log(2πe (1 − ρ²)) for unit-variance V, W with correlation ρ
    rho = 0.8
    w = torch.randn(3000, 1, generator=GEN, dtype=torch.float64)
    v = rho * w + math.sqrt(1 - rho**2) * torch.randn(3000, 1, generator=GEN, dtype=torch.float64)
    truth = 0.5 * math.log(2 * math.pi * math.e * (1 - rho**2))
    assert kde_conditional_entropy(v, w).item() == pytest.approx(truth, abs=0.1)


def test_er_bound_terms() -> None:
    z1 = torch.randn(100, 4, generator=GEN, dtype=torch.float64)
    z2 = z1 + 0.1 * torch.randn(100, 4, generator=GEN, dtype=torch.float64)
    out = er_bound(z1, z2, reconstruction="gaussian", kernel="gaussian", sigma=0.5)
    assert out["bound"].item() == pytest.approx((out["entropy"] + out["reconstruction"]).item())
    recon = gaussian_reconstruction(z2, z1, 0.5).item()
    assert out["reconstruction"].item() == pytest.approx(recon)
    vmf = er_bound(z1, z1, kappa=5.0)  # perfect reconstruction: cos = 1
    assert vmf["reconstruction"].item() == pytest.approx(log_vmf_normaliser(4, 5.0) + 5.0)
