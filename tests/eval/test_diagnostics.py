"""Diagnostics: collapse std, RankMe, alignment/uniformity, InfoNCE ≤ log K."""

from __future__ import annotations

import math

import pytest
import torch

from sslbench.eval.diagnostics import (
    Diagnostics,
    alignment,
    bottleneck_diagnostics,
    collapse_std,
    collapsed_outputs,
    entropy_diagnostics,
    infonce_estimate,
    rankme,
    uniformity,
)

GEN = torch.Generator().manual_seed(0)


def test_collapse_std_of_a_constant_embedding_is_zero() -> None:
    z = torch.full((64, 32), 3.0)
    assert collapse_std(z) == pytest.approx(0.0, abs=1e-7)


def test_collapse_std_of_a_gaussian_embedding_is_about_one_over_sqrt_d() -> None:
    d = 128
    z = torch.randn(4096, d, generator=GEN)
    assert collapse_std(z) == pytest.approx(1 / math.sqrt(d), rel=0.05)


@pytest.mark.parametrize("r", [1, 3, 10, 25])
def test_rankme_of_a_rank_r_matrix_is_about_r(r: int) -> None:
    # orthonormal factors with equal singular values: the entropy is exactly log r
    u, _ = torch.linalg.qr(torch.randn(200, r, generator=GEN))
    v, _ = torch.linalg.qr(torch.randn(64, r, generator=GEN))
    z = u @ v.T
    assert torch.linalg.matrix_rank(z).item() == r
    assert rankme(z) == pytest.approx(r, rel=1e-3)


def test_rankme_of_a_random_low_rank_matrix_is_at_most_r() -> None:
    z = torch.randn(300, 5, generator=GEN) @ torch.randn(5, 64, generator=GEN)
    assert 2.5 < rankme(z) <= 5.0 + 1e-3


def test_alignment_and_uniformity_by_hand() -> None:
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[2.0, 0.0], [0.0, -1.0]])
    # normalised pairs: identical (distance² 0) and opposite (distance² 4)
    assert alignment(z1, z2) == pytest.approx(2.0)
    # the two rows of z1 are orthogonal: ‖u1 − u2‖² = 2 → log exp(−4)
    assert uniformity(z1) == pytest.approx(-4.0)


def test_uniformity_of_a_collapsed_embedding_is_zero_and_of_spread_one_is_negative() -> None:
    assert uniformity(torch.ones(16, 8)) == pytest.approx(0.0, abs=1e-6)
    assert uniformity(torch.randn(256, 8, generator=GEN)) < -1.0


def test_infonce_never_exceeds_log_k() -> None:
    for k in (2, 16, 128):
        for scale in (0.0, 0.1, 10.0):
            z1 = torch.randn(k, 32, generator=GEN)
            z2 = z1 + scale * torch.randn(k, 32, generator=GEN)
            mi, log_k = infonce_estimate(z1, z2, temperature=0.05)
            assert log_k == pytest.approx(math.log(k))
            assert mi <= log_k + 1e-9
    # identical, well-separated views come close to the ceiling; independent ones near 0
    z = torch.eye(64)
    assert infonce_estimate(z, z, 0.01)[0] == pytest.approx(math.log(64), abs=1e-3)
    independent = infonce_estimate(torch.randn(64, 32, generator=GEN),
                                   torch.randn(64, 32, generator=GEN), 0.5)[0]
    assert independent < 0.5


class _Constant(torch.nn.Module):
    """A collapsed method: every image maps to the same backbone output and projection."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 6))
        self.projector = torch.nn.Linear(6, 3)
        with torch.no_grad():
            self.backbone[1].weight.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))


def test_measure_flags_a_collapsed_method_and_restores_train_mode() -> None:
    method = _Constant().train()
    views = torch.randn(8, 1, 2, 2, generator=GEN), torch.randn(8, 1, 2, 2, generator=GEN)
    diag = Diagnostics(*views)
    metrics = diag.measure(method)
    assert method.training
    assert metrics["collapse_std_backbone"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["infonce_log_k"] == pytest.approx(math.log(8))
    assert diag.dims == {"backbone": 6, "projector": 3}
    assert len(collapsed_outputs(metrics, diag.dims, ratio=0.1)) == 2
    healthy = {"collapse_std_backbone": 1 / math.sqrt(6)}
    assert collapsed_outputs(healthy, {"backbone": 6}, ratio=0.1) == []


def test_entropy_and_er_diagnostics() -> None:
    z1 = torch.randn(256, 16, generator=GEN)
    z2 = z1 + 0.1 * torch.randn(256, 16, generator=GEN)
    out = entropy_diagnostics(z1, z2, kernel="vmf", kappa=5.0)
    assert out["entropy_log_n"] == pytest.approx(math.log(256))
    assert out["er_bound"] == pytest.approx(out["entropy_kde"] + out["er_reconstruction"])
    # a cloud concentrated around one direction has a lower entropy than a spread one
    concentrated = torch.randn(256, 16, generator=GEN) * 0.05 + 1.0
    assert entropy_diagnostics(concentrated, concentrated)["entropy_kde"] < out["entropy_kde"] - 5
    collapsed = entropy_diagnostics(torch.ones(64, 16), torch.ones(64, 16))
    assert math.isfinite(collapsed["entropy_kde"]) and collapsed["entropy_kde"] < out["entropy_kde"]


def test_bottleneck_terms_fall_when_the_target_predicts_the_online_output() -> None:
    v = torch.randn(256, 4, generator=GEN, dtype=torch.float64)
    close = bottleneck_diagnostics(v, v + 0.05 * torch.randn(256, 4, generator=GEN,
                                                               dtype=torch.float64), "gaussian")
    far = bottleneck_diagnostics(v, torch.randn(256, 4, generator=GEN, dtype=torch.float64),
                                 "gaussian")
    assert close["ib_entropy"] == pytest.approx(far["ib_entropy"])
    assert close["ib_conditional_entropy"] < far["ib_conditional_entropy"] - 1.0


@pytest.mark.parametrize("method,has_ib", [("byol", True), ("simsiam", True), ("simclr", False)])
def test_measure_records_the_bottleneck_terms_for_latent_bootstrapping(method: str,
                                                                       has_ib: bool) -> None:
    from sslbench.methods import build_method
    from sslbench.resolve import resolve_config

    cfg = resolve_config(method, overrides=["data.dataset=synthetic", "model.width=4"])
    model = build_method(cfg, in_channels=1)
    views = torch.randn(32, 1, 28, 28, generator=GEN), torch.randn(32, 1, 28, 28, generator=GEN)
    metrics = Diagnostics(*views).measure(model)
    assert {"entropy_kde", "er_reconstruction", "er_bound"} <= set(metrics)
    assert ("ib_entropy" in metrics) == has_ib
    assert ("ib_conditional_entropy" in metrics) == has_ib
