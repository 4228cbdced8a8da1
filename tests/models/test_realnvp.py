"""RealNVP: invertible, and its log-determinant equals the log |det| of the autograd Jacobian."""

from __future__ import annotations

import pytest
import torch

from sslbench.models.encoders import HalfEncoder, MLPEncoder
from sslbench.models.realnvp import RealNVP


def _randomised(flow: RealNVP) -> RealNVP:
    torch.manual_seed(0)
    with torch.no_grad():  # the couplings start near zero (a permutation); make them non-trivial
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return flow


def test_an_additive_flow_starts_as_the_permutation_of_its_layers() -> None:
    flow = RealNVP(6, num_layers=4, hidden_dims=(16, 16))
    x = torch.randn(5, 6)
    y, logdet = flow.forward_with_logdet(x)
    order = torch.arange(6)
    for layer in flow.layers:  # each layer reads its input in the order of its permutation
        order = order[layer.permutation]
    # shifts from weights of size 1e-4 through two layers of 16: far below 1e-4
    assert torch.allclose(y, x[:, order], atol=1e-4) and torch.equal(logdet, torch.zeros(5))


@pytest.mark.parametrize("scale", ["none", "softplus"])
def test_inverse_recovers_the_input(scale: str) -> None:
    flow = _randomised(RealNVP(8, num_layers=4, hidden_dims=(32, 32), scale=scale).double())
    x = torch.randn(10, 8, dtype=torch.float64)
    y = flow(x)
    assert not torch.allclose(y, x)
    assert torch.allclose(flow.inverse(y), x, atol=1e-10)


@pytest.mark.parametrize("scale", ["none", "softplus"])
@pytest.mark.parametrize("dim", [2, 5])
def test_logdet_matches_the_jacobian(dim: int, scale: str) -> None:
    flow = _randomised(RealNVP(dim, num_layers=3, hidden_dims=(16,), scale=scale).double())
    x = torch.randn(4, dim, dtype=torch.float64)
    _, logdet = flow.forward_with_logdet(x)
    for i in range(4):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0], x[i])
        assert logdet[i].item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), abs=1e-8)


def test_half_encoder_sees_only_its_half() -> None:
    enc = HalfEncoder(MLPEncoder(1 * 14 * 28, 32, 10), "top")
    x = torch.randn(3, 1, 28, 28)
    changed = x.clone()
    changed[:, :, 14:] = 0.0
    assert torch.allclose(enc(x), enc(changed)) and enc.out_dim == 10
    flow = HalfEncoder(RealNVP(14 * 28, 2, (16,)), "bottom")
    assert flow(x).shape == (3, 392)
