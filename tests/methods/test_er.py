"""ER (Rodríguez-Gálvez et al. 2023): the loss is minus the symmetrised ER bound, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from sslbench.errors import ConfigError
from sslbench.methods import build_method
from sslbench.methods.er import ERConfig, er_loss
from sslbench.resolve import resolve_config


def test_the_loss_is_symmetric_in_the_views() -> None:
    """Symmetrised over the two views: swapping them changes nothing (vMF and Gaussian)."""
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(32, 8, generator=g), torch.randn(32, 8, generator=g)
    for cfg in (ERConfig(kappa=4.0),
                ERConfig(kernel="gaussian", reconstruction="gaussian", bandwidth="0.5")):
        loss, _ = er_loss(z1, z2, cfg)
        assert torch.isfinite(loss)
        assert loss.item() == pytest.approx(er_loss(z2, z1, cfg)[0].item(), rel=1e-6)


@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_loss_by_hand_in_one_dimension(shift: float) -> None:
    """Codes 0, 1, 3 and the same shifted by ``shift``; Gaussian kernel and q with h = σ = 1.
    Leave-one-out KDE: Ĥ = −(1/3) Σₙ log[(1/2) Σ_{m≠n} φ(zₙ − z_m)], φ the N(0, 1) density, the
    same for both views (a shift moves no distance); E log q = −½ log 2π − shift²/2. The loss is
    minus their sum, the same in both directions."""
    z1 = torch.tensor([[0.0], [1.0], [3.0]])
    cfg = ERConfig(kernel="gaussian", reconstruction="gaussian", bandwidth="1.0", sigma=1.0)
    loss, logs = er_loss(z1, z1 + shift, cfg)
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    # squared distances 1 (0–1), 9 (0–3), 4 (1–3): each point's two neighbours
    neighbours = [(1, 9), (1, 4), (9, 4)]
    entropy = -sum(math.log((math.exp(-a / 2) + math.exp(-b / 2)) / 2) - half_log_2pi
                   for a, b in neighbours) / 3
    reconstruction = -half_log_2pi - shift**2 / 2
    assert logs["entropy"].item() == pytest.approx(entropy, rel=1e-6)
    assert logs["reconstruction"].item() == pytest.approx(reconstruction, rel=1e-6)
    assert loss.item() == pytest.approx(-(entropy + reconstruction), rel=1e-6)


def test_training_step_has_gradients_and_bad_bandwidth_is_rejected() -> None:
    cfg = resolve_config("er", overrides=["data.dataset=synthetic", "model.width=4"])
    method = build_method(cfg, in_channels=1)
    loss, _ = method.training_step([torch.randn(8, 1, 28, 28), torch.randn(8, 1, 28, 28)])
    loss.backward()
    assert method.projector.net[0].weight.grad is not None
    with pytest.raises(ConfigError, match=r"method\.bandwidth"):
        resolve_config("er", overrides=["method.bandwidth=wide"])
