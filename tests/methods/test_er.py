"""ER (Rodríguez-Gálvez et al. 2023): the loss is minus the symmetrised ER bound."""

from __future__ import annotations

import pytest
import torch

from sslbench.errors import ConfigError
from sslbench.methods import build_method
from sslbench.methods.er import ERConfig, er_loss
from sslbench.mi.entropy import er_bound, kde_entropy
from sslbench.resolve import resolve_config


def test_loss_is_minus_the_symmetrised_bound() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(32, 8, generator=g), torch.randn(32, 8, generator=g)
    cfg = ERConfig(kappa=4.0)
    loss, logs = er_loss(z1, z2, cfg)
    a = er_bound(z1, z2, kappa=4.0)["bound"]
    b = er_bound(z2, z1, kappa=4.0)["bound"]
    assert loss.item() == pytest.approx(-(a + b).item() / 2, rel=1e-6)
    assert logs["entropy"].item() == pytest.approx(
        ((kde_entropy(z1, "vmf") + kde_entropy(z2, "vmf")) / 2).item(), rel=1e-6)
    gaussian = ERConfig(kernel="gaussian", reconstruction="gaussian", bandwidth="0.5")
    assert torch.isfinite(er_loss(z1, z2, gaussian)[0])


def test_training_step_has_gradients_and_bad_bandwidth_is_rejected() -> None:
    cfg = resolve_config("er", overrides=["data.dataset=synthetic", "model.width=4"])
    method = build_method(cfg, in_channels=1)
    loss, _ = method.training_step([torch.randn(8, 1, 28, 28), torch.randn(8, 1, 28, 28)])
    loss.backward()
    assert method.projector.net[0].weight.grad is not None
    with pytest.raises(ConfigError, match=r"method\.bandwidth"):
        resolve_config("er", overrides=["method.bandwidth=wide"])
