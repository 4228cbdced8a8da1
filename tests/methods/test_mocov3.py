"""MoCo v3: the symmetric in-batch contrastive loss with the 2τ factor, predictor switches."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sslbench.data import load_dataset
from sslbench.losses import mocov3_loss
from sslbench.methods import build_method
from sslbench.resolve import resolve_config
from sslbench.train.loop import pretrain
from sslbench.train.optim import build_optimizer


def transcribed_ctr(q, k, tau):
    """MoCo v3 Alg. 1: ctr(q, k) = CE(q kᵀ / τ, labels = n) · 2τ, written out with loops."""
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    n = q.shape[0]
    total = 0.0
    for i in range(n):
        denom = sum(torch.exp(torch.dot(q[i], k[j]) / tau) for j in range(n))
        total = total - torch.log(torch.exp(torch.dot(q[i], k[i]) / tau) / denom)
    return 2 * tau * total / n


def test_hand_computed_case():
    # q₁ = k₂ = q₂ = k₁ = I₂, τ = 1: each ctr = 2 · log(1 + 1/e).
    e = torch.eye(2)
    loss = mocov3_loss(e, e.clone(), e.clone(), e.clone(), 1.0)
    assert math.isclose(loss.item(), 4 * math.log(1 + 1 / math.e), rel_tol=1e-6)


def test_matches_transcription_and_invariances():
    g = torch.Generator().manual_seed(0)
    q1, q2, k1, k2 = (torch.randn(5, 4, generator=g) for _ in range(4))
    for tau in (0.2, 1.0):
        expected = transcribed_ctr(q1, k2, tau) + transcribed_ctr(q2, k1, tau)
        assert torch.allclose(mocov3_loss(q1, q2, k1, k2, tau), expected, atol=1e-5)
    base = mocov3_loss(q1, q2, k1, k2, 0.2)
    perm = torch.randperm(5, generator=g)
    assert torch.allclose(mocov3_loss(q1[perm], q2[perm], k1[perm], k2[perm], 0.2), base)
    assert torch.allclose(mocov3_loss(2 * q1, q2, 5 * k1, k2, 0.2), base, atol=1e-6)
    assert torch.allclose(mocov3_loss(q2, q1, k2, k1, 0.2), base, atol=1e-6)  # symmetric


def test_keys_get_no_gradient():
    q1, q2, k1, k2 = (torch.randn(4, 3, requires_grad=True) for _ in range(4))
    mocov3_loss(q1, q2, k1, k2, 0.2).backward()
    assert q1.grad is not None and q2.grad is not None
    assert k1.grad is None and k2.grad is None


def _tiny(*overrides: str):
    cfg = resolve_config("mocov3", overrides=["data.dataset=synthetic", *overrides])
    return cfg, build_method(cfg, in_channels=1)


def test_momentum_encoder_gets_no_gradient_and_predictor_does():
    torch.manual_seed(0)
    _, model = _tiny()
    loss, _ = model.training_step([torch.randn(8, 1, 28, 28), torch.randn(8, 1, 28, 28)])
    loss.backward()
    assert all(p.grad is None for p in model.target_backbone.parameters())
    assert all(p.grad is None for p in model.target_projector.parameters())
    assert all(p.grad is not None for p in model.predictor.parameters())
    assert model.on_train_step_end(0, 10)["ema_decay"] == 0.99


def test_predictor_switch_and_lr_multiplier():
    _, without = _tiny("method.use_predictor=false")
    assert isinstance(without.predictor, nn.Identity)
    cfg, model = _tiny("method.predictor_lr_mult=10", "optimizer.lr=0.01")
    opt = build_optimizer(model, cfg.optimizer)
    predictor = {id(p) for p in model.predictor.parameters()}
    for group in opt.param_groups:
        in_predictor = {id(p) in predictor for p in group["params"]}
        assert len(in_predictor) == 1  # a group is all predictor or none of it
        assert math.isclose(group["lr"], 0.1 if in_predictor.pop() else 0.01)
    trained = {id(p) for g in opt.param_groups for p in g["params"]}
    assert trained == {id(p) for p in model.parameters() if p.requires_grad}


def test_trains_on_synthetic(tmp_path: Path):
    cfg = resolve_config("mocov3", flags={"data.dataset": "synthetic"},
                         overrides=["train.epochs=1"])
    full = load_dataset("synthetic", None, seed=0)  # 4 steps of 64 on 256 images
    dataset = replace(full, train_images=full.train_images[:256],
                      train_labels=full.train_labels[:256])
    model = build_method(cfg, dataset.info.channels)
    result = pretrain(cfg, dataset, model, torch.device("cpu"), tmp_path, show_progress=False)
    assert math.isfinite(result.final_loss) and result.steps == 4
