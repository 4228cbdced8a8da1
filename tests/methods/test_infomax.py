"""InfoMax (Tschannen et al. 2020): the two-halves views, every encoder × critic, the bound as the
loss, the per-epoch estimates with the trained critic, and its config keys / CLI flags."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from sslbench.cli import main
from sslbench.errors import ConfigError
from sslbench.methods import build_method
from sslbench.mi.critics import BilinearCritic
from sslbench.resolve import resolve_config


def _tiny(*overrides: str):
    cfg = resolve_config("infomax", overrides=["data.dataset=synthetic",
                                               "method.realnvp_hidden_dim=16",
                                               "method.realnvp_layers=2", *overrides])
    return cfg, build_method(cfg, in_channels=1)


def test_defaults_follow_the_paper() -> None:
    cfg = resolve_config("infomax")
    m = cfg.method
    assert (m.bound, m.critic, m.encoder, m.views) == ("infonce", "bilinear", "mlp", "halves")
    assert (m.encoder_hidden_dim, m.embedding_dim) == (300, 100)
    assert (m.separable_hidden_dim, m.mlp_critic_hidden_dim, m.critic_embedding_dim) == (
        100, 200, 100)
    assert (m.realnvp_layers, m.realnvp_hidden_dim, m.realnvp_scale) == (30, 512, "none")
    assert m.mi_target is None
    assert cfg.optimizer.lr == 1e-4 and cfg.train.batch_size == 128
    assert cfg.augment.crop_min_scale == 1.0 and cfg.augment.jitter_prob == 0.0


@pytest.mark.parametrize("encoder", ["realnvp", "mlp", "convnet"])
@pytest.mark.parametrize("critic", ["bilinear", "separable", "mlp"])
def test_every_encoder_and_critic_trains_on_the_halves(encoder: str, critic: str) -> None:
    torch.manual_seed(0)
    _, method = _tiny(f"method.encoder={encoder}", f"method.critic={critic}",
                        "method.bound=nwj", "model.width=4")
    x = torch.randn(6, 1, 28, 28)
    loss, logs = method.training_step([x, x])
    assert loss.item() == pytest.approx(-logs["mi_estimate"].item())
    loss.backward()
    grads = [p.grad for p in method.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    if encoder == "realnvp":
        assert method.backbone.out_dim == 14 * 28  # bijective: the half's pixels


class _Pixels(nn.Module):
    """Codes by hand: the first two pixels of image row ``row``."""

    def __init__(self, row: int) -> None:
        super().__init__()
        self.row = row

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, self.row, :2]


@pytest.mark.parametrize("target,expected", [
    # scores = I₂: InfoNCE = (1/K) Σᵢ [fᵢᵢ − log Σⱼ e^{fᵢⱼ}] + log K = 1 − log(e + 1) + log 2
    (None, -(1 - math.log(math.e + 1) + math.log(2))),
    # |Î − t| with t = 2
    (2.0, 2 - (1 - math.log(math.e + 1) + math.log(2))),
])
def test_the_objective_by_hand(target: float | None, expected: float) -> None:
    """Codes e₁, e₂ from the top row and the same from the bottom row, the bilinear critic W = I:
    the 2 × 2 scores are the identity, and the loss is −InfoNCE, or |InfoNCE − t| (sec. 3.3)."""
    keys = ["method.encoder=mlp"] + ([f"method.mi_target={target}"] if target else [])
    _, method = _tiny(*keys)
    method.backbone, method.second = _Pixels(0), _Pixels(27)
    method.critic = BilinearCritic(2, 2)
    with torch.no_grad():
        method.critic.weight.copy_(torch.eye(2))
    x = torch.zeros(2, 1, 28, 28)
    x[0, 0, 0, 0] = x[1, 0, 0, 1] = x[0, 0, 27, 0] = x[1, 0, 27, 1] = 1.0
    loss, logs = method.training_step([x, x])
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert logs["mi_estimate"].item() == pytest.approx(1 - math.log(math.e + 1) + math.log(2),
                                                       abs=1e-6)


def test_the_probe_sees_the_top_half_and_the_second_encoder_the_bottom() -> None:
    _, method = _tiny("method.encoder=mlp")
    method.eval()
    x = torch.randn(4, 1, 28, 28)
    top_changed, bottom_changed = x.clone(), x.clone()
    top_changed[:, :, :14] += 1.0
    bottom_changed[:, :, 14:] += 1.0
    assert torch.equal(method.backbone(x), method.backbone(bottom_changed))
    assert not torch.equal(method.backbone(x), method.backbone(top_changed))
    assert torch.equal(method.second(x), method.second(top_changed))


def test_augment_views_share_one_full_image_encoder() -> None:
    _, method = _tiny("method.views=augment", "method.encoder=mlp", "method.critic=separable")
    assert method.second is method.backbone
    assert method.scores(torch.randn(5, 1, 28, 28), torch.randn(5, 1, 28, 28)).shape == (5, 5)


def test_mi_estimates_on_a_held_out_batch() -> None:
    torch.manual_seed(0)
    _, method = _tiny("method.encoder=mlp", "method.critic=mlp", "method.bound=dv")
    x = torch.randn(16, 1, 28, 28)
    out = method.mi_estimates(x, x)
    assert out["mi_log_k"] == pytest.approx(math.log(16))
    assert out["mi_infonce"] <= out["mi_log_k"]
    assert out["mi_dv"] >= out["mi_nwj"] - 1e-9
    assert out["mi_estimate"] == out["mi_dv"]


def test_bad_keys_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"method\.bound"):
        resolve_config("infomax", overrides=["method.bound=mine"])
    with pytest.raises(ConfigError, match=r"method\.critic"):
        resolve_config("infomax", overrides=["method.critic=cosine"])


def test_cli_keys_set_bound_and_critic(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    argv = ["pretrain", "infomax", "method.bound=dv", "method.critic=separable", "--dataset",
            "synthetic", "--dry-run", "--db", str(tmp_path / "db.sqlite")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "bound: dv" in out and "critic: separable" in out
    assert main(["pretrain", "simclr", "method.bound=dv", "--dry-run"]) == 2
    assert "method.bound" in capsys.readouterr().err
    assert not (tmp_path / "db.sqlite").exists()
