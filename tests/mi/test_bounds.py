"""InfoNCE, NWJ and DV on correlated Gaussians with a known MI, with the optimal critic in closed
form and with critics trained briefly; the bounds' orderings and InfoNCE's ceiling log K."""

from __future__ import annotations

import math

import pytest
import torch

from sslbench.mi.bounds import BOUNDS, dv, infonce, nwj
from sslbench.mi.critics import ConcatCritic, SeparableCritic
from sslbench.mi.gaussians import (
    gaussian_mi,
    log_density_ratio,
    rho_for_mi,
    sample_correlated,
)

DIM, RHO, K = 2, 0.5, 256


def _batches(n: int, k: int = K, rho: float = RHO, dim: int = DIM, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [sample_correlated(k, dim, rho, gen) for _ in range(n)]


def test_gaussian_mi_and_its_inverse() -> None:
    assert gaussian_mi(0.5, 1) == pytest.approx(-0.5 * math.log(0.75))
    assert gaussian_mi(rho_for_mi(3.0, 5), 5) == pytest.approx(3.0)


def test_closed_form_critic_is_the_log_density_ratio() -> None:
    # one coordinate: log N(y; ρx, 1−ρ²) − log N(y; 0, 1), by hand
    x, y = torch.tensor([[0.3]], dtype=torch.float64), torch.tensor([[-1.2]], dtype=torch.float64)
    rho = 0.6
    by_hand = (-0.5 * math.log(1 - rho**2) - (-1.2 - rho * 0.3) ** 2 / (2 * (1 - rho**2))
               + 1.2**2 / 2)
    assert log_density_ratio(x, y, rho).item() == pytest.approx(by_hand)


@pytest.mark.parametrize("name,shift", [("infonce", 0.0), ("nwj", 1.0), ("dv", 0.0)])
def test_each_bound_with_its_optimal_critic_recovers_the_true_mi(name: str, shift: float) -> None:
    truth = gaussian_mi(RHO, DIM)  # 0.288 nats, far below log 256 = 5.5
    estimates = [BOUNDS[name](log_density_ratio(x, y, RHO) + shift).item()
                 for x, y in _batches(20)]
    assert sum(estimates) / len(estimates) == pytest.approx(truth, abs=0.03)


def test_infonce_never_exceeds_log_k() -> None:
    # a true MI of 20 nats, far above log K: the estimate saturates just below log K
    rho = rho_for_mi(20.0, 10)
    for k in (16, 64, 256):
        for x, y in _batches(3, k=k, rho=rho, dim=10):
            est = infonce(log_density_ratio(x, y, rho)).item()
            assert est <= math.log(k) + 1e-9
            assert est > math.log(k) - 0.5
    # any scores at all, even a critic that makes the positives huge
    scores = torch.randn(32, 32) + 1e6 * torch.eye(32)
    assert infonce(scores).item() == pytest.approx(math.log(32))
    assert infonce(torch.randn(32, 32) * 50).item() <= math.log(32)


def test_dv_is_at_least_nwj_on_the_same_critic() -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        scores = torch.randn(16, 16, generator=gen) * 3 + torch.randn(1, generator=gen) * 5
        assert dv(scores).item() >= nwj(scores).item() - 1e-6


def test_bounds_by_hand_on_a_2x2_batch() -> None:
    s = torch.tensor([[2.0, 0.0], [1.0, 3.0]])
    assert infonce(s).item() == pytest.approx(
        0.5 * (2 - math.log(math.e**2 + 1) + 3 - math.log(math.e + math.e**3)) + math.log(2))
    assert nwj(s).item() == pytest.approx(2.5 - math.exp(-1) * (1 + math.e) / 2)
    assert dv(s).item() == pytest.approx(2.5 - math.log((1 + math.e) / 2))


def test_bounds_are_differentiable() -> None:
    s = torch.randn(8, 8, requires_grad=True)
    for bound in BOUNDS.values():
        (g,) = torch.autograd.grad(bound(s), s)
        assert torch.isfinite(g).all() and g.abs().sum() > 0


@pytest.mark.parametrize("name,critic_cls,hidden", [("infonce", SeparableCritic, 32),
                                                    ("nwj", SeparableCritic, 32),
                                                    ("dv", ConcatCritic, (32,))])
def test_a_briefly_trained_critic_estimates_the_true_mi(name: str, critic_cls: type,
                                                        hidden: int | tuple[int]) -> None:
    truth = gaussian_mi(RHO, DIM)
    torch.manual_seed(0)
    critic = critic_cls(DIM, DIM, hidden)
    opt = torch.optim.Adam(critic.parameters(), lr=3e-3)
    for x, y in _batches(200, k=64, seed=2):
        loss = -BOUNDS[name](critic(x.float(), y.float()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        held_out = [BOUNDS[name](critic(x.float(), y.float())).item()
                    for x, y in _batches(20, seed=3)]
    assert sum(held_out) / len(held_out) == pytest.approx(truth, abs=0.08)
