"""DirectPred: the predictor is set from the eigendecomposition of the running correlation."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sslbench.data import load_dataset
from sslbench.errors import ConfigError
from sslbench.losses import directpred_predictor
from sslbench.methods import build_method
from sslbench.methods.directpred import update_correlation
from sslbench.resolve import resolve_config
from sslbench.train.loop import pretrain
from sslbench.train.optim import build_optimizer


def test_predictor_matches_the_eigen_formula():
    g = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.double))
    s = torch.tensor([4.0, 1.0, 0.25, 0.0], dtype=torch.double)
    correlation = u @ torch.diag(s) @ u.T
    eps = 0.01
    # p_j = sqrt(s_j / max s) + ε = 1, 0.5, 0.25, 0 (+ ε); W_p = U diag(p) Uᵀ.
    p = torch.tensor([1.0, 0.5, 0.25, 0.0], dtype=torch.double) + eps
    expected = u @ torch.diag(p) @ u.T
    assert torch.allclose(directpred_predictor(correlation, eps).double(), expected, atol=1e-5)
    # the same eigenvectors, and scaling F̂ changes nothing (only s_j / max s matters)
    assert torch.allclose(directpred_predictor(7 * correlation, eps).double(), expected, atol=1e-5)


def test_running_correlation():
    f1 = torch.tensor([[1.0, 0.0], [1.0, 2.0]])
    f2 = torch.tensor([[0.0, 2.0], [0.0, 0.0]])
    corr = torch.zeros(2, 2)
    update_correlation(corr, f1, rho=0.3)
    e1 = torch.tensor([[1.0, 1.0], [1.0, 2.0]])  # E[f fᵀ] of f1 by hand
    assert torch.allclose(corr, 0.7 * e1)
    update_correlation(corr, f2, rho=0.3)
    e2 = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    assert torch.allclose(corr, 0.3 * 0.7 * e1 + 0.7 * e2)


def _tiny(*overrides: str):
    cfg = resolve_config("directpred", overrides=["data.dataset=synthetic", *overrides])
    return cfg, build_method(cfg, in_channels=1)


def test_model_sets_the_predictor_every_update_every_steps():
    torch.manual_seed(0)
    cfg, model = _tiny("method.update_every=2", "method.rho=0.5", "method.eps=0.02")
    weights = []
    for _ in range(3):
        loss, _ = model.training_step([torch.randn(8, 1, 28, 28), torch.randn(8, 1, 28, 28)])
        weights.append(model.predictor.weight.clone())
        if len(weights) == 1:
            expected = directpred_predictor(model.correlation, 0.02)
            assert torch.allclose(weights[0], expected, atol=1e-6)
    assert torch.equal(weights[0], weights[1])  # step 2: not an update step
    assert not torch.equal(weights[1], weights[2])
    assert torch.allclose(weights[2], directpred_predictor(model.correlation, 0.02), atol=1e-6)

    loss.backward()
    assert model.predictor.weight.grad is None  # set, not learned
    assert all(p.grad is None for p in model.target_backbone.parameters())
    assert all(p.grad is not None for p in model.backbone.parameters())
    in_optimizer = {id(p) for g in build_optimizer(model, cfg.optimizer).param_groups
                    for p in g["params"]}
    assert id(model.predictor.weight) not in in_optimizer


def test_bad_rho_is_a_config_error():
    with pytest.raises(ConfigError, match=r"method\.rho=1\.0 is out of range"):
        resolve_config("directpred", overrides=["method.rho=1"])


def test_trains_on_synthetic(tmp_path: Path):
    cfg = resolve_config("directpred", flags={"data.dataset": "synthetic"},
                         overrides=["train.epochs=1"])
    full = load_dataset("synthetic", None, seed=0)  # 4 steps of 64 on 256 images
    dataset = replace(full, train_images=full.train_images[:256],
                      train_labels=full.train_labels[:256])
    model = build_method(cfg, dataset.info.channels)
    result = pretrain(cfg, dataset, model, torch.device("cpu"), tmp_path, show_progress=False)
    assert math.isfinite(result.final_loss) and result.steps == 4
    assert model.correlation.abs().sum() > 0
