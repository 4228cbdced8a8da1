"""Alignment and uniformity (Wang & Isola 2020) as a training objective."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from sslbench.data import load_dataset
from sslbench.losses import align_uniform_loss, alignment, uniformity
from sslbench.methods import build_method
from sslbench.resolve import resolve_config
from sslbench.train.loop import pretrain


def test_hand_computed_terms():
    x, y = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert math.isclose(alignment(x, y, alpha=2).item(), 2.0, rel_tol=1e-6)  # ‖x − y‖² = 2
    assert math.isclose(alignment(x, y, alpha=1).item(), math.sqrt(2), rel_tol=1e-6)
    # two antipodal points: one pair, ‖x − y‖² = 4 → log exp(−t · 4) = −4t
    antipodal = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert math.isclose(uniformity(antipodal, t=2).item(), -8.0, rel_tol=1e-6)


def test_uniformity_matches_transcription():
    g = torch.Generator().manual_seed(0)
    u = F.normalize(torch.randn(7, 3, generator=g), dim=1)
    pairs = [torch.exp(-2 * (u[i] - u[j]).pow(2).sum()) for i in range(7) for j in range(i + 1, 7)]
    assert torch.allclose(uniformity(u, t=2), torch.log(sum(pairs) / len(pairs)), atol=1e-6)


def test_objective_invariances_and_weight():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    base = align_uniform_loss(z1, z2, alpha=2, t=2, weight=1)
    perm = torch.randperm(6, generator=g)
    assert torch.allclose(align_uniform_loss(z1[perm], z2[perm]), base, atol=1e-6)
    assert torch.allclose(align_uniform_loss(5 * z1, 0.3 * z2), base, atol=1e-6)  # normalised
    u1, u2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    expected = alignment(u1, u2) + 0.5 * (uniformity(u1) + uniformity(u2)) / 2
    assert torch.allclose(align_uniform_loss(z1, z2, weight=0.5), expected, atol=1e-6)


def test_trains_on_synthetic(tmp_path: Path):
    cfg = resolve_config("align_uniform", flags={"data.dataset": "synthetic"},
                         overrides=["train.epochs=1", "method.t=3"])
    assert cfg.method.t == 3.0
    full = load_dataset("synthetic", None, seed=0)  # 4 steps of 64 on 256 images
    dataset = replace(full, train_images=full.train_images[:256],
                      train_labels=full.train_labels[:256])
    model = build_method(cfg, dataset.info.channels)
    result = pretrain(cfg, dataset, model, torch.device("cpu"), tmp_path, show_progress=False)
    assert math.isfinite(result.final_loss) and result.steps == 4
