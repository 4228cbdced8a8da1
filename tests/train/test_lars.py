"""LARS (You et al. 2017, Alg. 1): one step by hand, exclusions, config, a training run."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from sslbench.config import OptimizerConfig
from sslbench.data import load_dataset
from sslbench.errors import ConfigError
from sslbench.methods import build_method
from sslbench.resolve import resolve_config
from sslbench.train.loop import pretrain
from sslbench.train.optim import LARS, build_optimizer


def _linear(weight: list[float], bias: float) -> nn.Linear:
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weight]))
        layer.bias.fill_(bias)
    return layer


def test_one_step_by_hand():
    layer = _linear([3.0, 4.0], 1.0)
    opt = build_optimizer(layer, OptimizerConfig(name="lars", lr=0.5, weight_decay=0.1,
                                                 momentum=0.9, eta=0.01))
    assert isinstance(opt, LARS)
    layer.weight.grad = torch.tensor([[0.0, 1.0]])
    layer.bias.grad = torch.tensor([2.0])
    opt.step()
    # weight: ‖w‖ = 5, ‖g‖ = 1 → λ = 0.01 · 5 / (1 + 0.1 · 5) = 1/30;
    # v = 0.5 · λ · (g + 0.1 w) = (0.3, 1.4) / 60; w ← w − v.
    assert torch.allclose(layer.weight, torch.tensor([[3 - 0.3 / 60, 4 - 1.4 / 60]]))
    # bias: excluded from adaptation and weight decay → plain SGD: 1 − 0.5 · 2 = 0.
    assert torch.allclose(layer.bias, torch.tensor([0.0]))

    # second step, same gradient: v ← 0.9 v + 0.5 λ' (g + 0.1 w'), λ' from the new w'.
    w = torch.tensor([3 - 0.3 / 60, 4 - 1.4 / 60])
    v = torch.tensor([0.3, 1.4]) / 60
    g = torch.tensor([0.0, 1.0])
    lam = 0.01 * w.norm() / (g.norm() + 0.1 * w.norm())
    v = 0.9 * v + 0.5 * lam * (g + 0.1 * w)
    opt.step()
    assert torch.allclose(layer.weight, (w - v).unsqueeze(0), atol=1e-7)
    assert torch.allclose(layer.bias, torch.tensor([0.0 - (0.9 * 1.0 + 0.5 * 2.0)]))


def test_zero_weights_use_a_trust_ratio_of_one():
    layer = _linear([0.0, 0.0], 0.0)
    opt = build_optimizer(layer, OptimizerConfig(name="lars", lr=0.1, weight_decay=0.0, eta=0.01))
    layer.weight.grad = torch.tensor([[1.0, -2.0]])
    opt.step()
    assert torch.allclose(layer.weight, torch.tensor([[-0.1, 0.2]]))


def test_groups_exclude_biases_and_norms():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    opt = build_optimizer(model, OptimizerConfig(name="lars", weight_decay=0.3))
    adapted = {id(p) for g in opt.param_groups if not g["lars_exclude"] for p in g["params"]}
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert adapted == decayed == {id(model[0].weight)}


def test_config_keys():
    cfg = resolve_config("simclr", overrides=["optimizer.name=lars", "optimizer.eta=0.02"])
    assert (cfg.optimizer.name, cfg.optimizer.eta) == ("lars", 0.02)
    with pytest.raises(ConfigError, match=r"optimizer\.eta=0\.0 is out of range"):
        resolve_config("simclr", overrides=["optimizer.eta=0"])
    with pytest.raises(ConfigError, match="choose one of adamw, sgd, lars"):
        resolve_config("simclr", overrides=["optimizer.name=lamb"])


def test_trains_a_method(tmp_path: Path):
    cfg = resolve_config("byol", flags={"data.dataset": "synthetic"},
                         overrides=["train.epochs=1", "optimizer.name=lars", "optimizer.lr=1.0",
                                    "method.predictor_lr_mult=2"])
    full = load_dataset("synthetic", None, seed=0)  # 4 steps of 64 on 256 images
    dataset = replace(full, train_images=full.train_images[:256],
                      train_labels=full.train_labels[:256])
    model = build_method(cfg, dataset.info.channels)
    before = model.backbone.stages[0][0].weight.clone()
    result = pretrain(cfg, dataset, model, torch.device("cpu"), tmp_path, show_progress=False)
    assert math.isfinite(result.final_loss)
    assert not torch.equal(before, model.backbone.stages[0][0].weight)


def test_clip_lr_caps_the_adapted_lr_at_the_scheduled_one():
    # ‖w‖ = 5, ‖g‖ = 1, β = 0.1, η = 0.01 → λ = 1/30; γ = 0.5 > λ, so the clipped step's lr is
    # γ · min(λ/γ, 1) = λ, not γλ (solo-learn's clip_lars_lr, apex LARC "clip").
    lam, g = 1 / 30, torch.tensor([0.0, 1.0])
    w = torch.tensor([3.0, 4.0])
    for clip, step_lr in ((False, 0.5 * lam), (True, lam)):
        layer = _linear([3.0, 4.0], 1.0)
        opt = build_optimizer(layer, OptimizerConfig(name="lars", lr=0.5, weight_decay=0.1,
                                                     eta=0.01, lars_clip_lr=clip))
        layer.weight.grad = g.unsqueeze(0).clone()
        layer.bias.grad = torch.tensor([2.0])
        opt.step()
        expected = w - step_lr * (g + 0.1 * w)
        torch.testing.assert_close(layer.weight, expected.unsqueeze(0))
        assert torch.allclose(layer.bias, torch.tensor([0.0]))  # excluded: plain SGD either way


def test_clip_lr_leaves_a_small_local_lr_alone():
    # γ = 1 ≥ λ: γ · min(λ/γ, 1) = λ = γλ, so clipping changes nothing.
    steps = []
    for clip in (False, True):
        layer = _linear([3.0, 4.0], 0.0)
        opt = build_optimizer(layer, OptimizerConfig(name="lars", lr=1.0, weight_decay=0.0,
                                                     eta=0.01, lars_clip_lr=clip))
        layer.weight.grad = torch.tensor([[0.0, 1.0]])
        opt.step()
        steps.append(layer.weight.detach().clone())
    # λ = 0.01 · 5 / 1 = 0.05 < γ = 1: both move w by 0.05 · g
    torch.testing.assert_close(steps[0], torch.tensor([[3.0, 4.0 - 0.05]]))
    torch.testing.assert_close(steps[1], steps[0])
