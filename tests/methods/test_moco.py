"""MoCo v2: InfoNCE against a queue (MoCo eq. 1), the FIFO queue, the momentum key encoder."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sslbench.data import load_dataset
from sslbench.errors import ConfigError
from sslbench.losses import moco_loss
from sslbench.methods import build_method
from sslbench.methods.moco import enqueue
from sslbench.resolve import resolve_config
from sslbench.train.loop import pretrain


def transcribed_moco(q, k, queue, tau):
    """MoCo eq. 1 with loops: L_q = −log exp(q·k₊/τ) / Σ_{i=0}^{K} exp(q·k_i/τ), mean over q."""
    q, k, queue = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    total = 0.0
    for n in range(q.shape[0]):
        pos = torch.exp(torch.dot(q[n], k[n]) / tau)
        denom = pos + sum(torch.exp(torch.dot(q[n], neg) / tau) for neg in queue)
        total = total - torch.log(pos / denom)
    return total / q.shape[0]


def test_hand_computed_case():
    # q = k₊ = e₁, negatives e₂ and −e₁, τ = 1: logits 1, 0, −1.
    q = torch.tensor([[1.0, 0.0]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    expected = -math.log(math.e / (math.e + 1 + math.exp(-1)))
    assert math.isclose(moco_loss(q, q.clone(), queue, 1.0).item(), expected, rel_tol=1e-6)


def test_matches_transcription_and_invariances():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    queue = torch.randn(9, 5, generator=g)
    for tau in (0.07, 0.2, 1.0):
        base = moco_loss(q, k, queue, tau)
        assert torch.allclose(base, transcribed_moco(q, k, queue, tau), atol=1e-5)
    perm, qperm = torch.randperm(6, generator=g), torch.randperm(9, generator=g)
    assert torch.allclose(moco_loss(q[perm], k[perm], queue, 0.2), moco_loss(q, k, queue, 0.2))
    assert torch.allclose(moco_loss(q, k, queue[qperm], 0.2), moco_loss(q, k, queue, 0.2))
    assert torch.allclose(moco_loss(3 * q, 0.2 * k, 7 * queue, 0.2), moco_loss(q, k, queue, 0.2),
                          atol=1e-6)


def test_gradient_reaches_the_query_only():
    q = torch.randn(4, 3, requires_grad=True)
    k = torch.randn(4, 3, requires_grad=True)
    queue = torch.randn(8, 3, requires_grad=True)
    moco_loss(q, k, queue, 0.2).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None and queue.grad is None


def test_enqueue_is_fifo_with_wraparound():
    queue, ptr = torch.zeros(5, 1), torch.zeros((), dtype=torch.long)
    enqueue(queue, ptr, torch.tensor([[1.0], [2.0]]))
    assert queue.flatten().tolist() == [1, 2, 0, 0, 0] and ptr.item() == 2
    enqueue(queue, ptr, torch.tensor([[3.0], [4.0], [5.0], [6.0]]))  # the oldest (1) goes
    assert queue.flatten().tolist() == [6, 2, 3, 4, 5] and ptr.item() == 1
    enqueue(queue, ptr, torch.arange(10.0, 17.0).unsqueeze(1))  # more keys than K: the last K
    assert queue.flatten().tolist() == [16, 12, 13, 14, 15] and ptr.item() == 1  # 12 oldest


def _tiny(*overrides: str):
    cfg = resolve_config("moco", overrides=["data.dataset=synthetic", *overrides])
    return build_method(cfg, in_channels=1)


@pytest.mark.parametrize("symmetric", [False, True])
def test_step_enqueues_the_keys_and_key_encoder_gets_no_gradient(symmetric: bool):
    torch.manual_seed(0)
    model = _tiny("method.queue_size=64", f"method.symmetric={symmetric}")
    x1, x2 = torch.randn(8, 1, 28, 28), torch.randn(8, 1, 28, 28)
    loss, _ = model.training_step([x1, x2])
    loss.backward()
    assert model.queue_ptr.item() == (16 if symmetric else 8)
    with torch.no_grad():
        k = F.normalize(model.target_projector(model.target_backbone(torch.cat([x1, x2]))), dim=1)
    newest = model.queue[:16] if symmetric else model.queue[:8]
    assert torch.allclose(newest, k if symmetric else k[8:], atol=1e-5)
    assert torch.allclose(model.queue.norm(dim=1), torch.ones(64))
    assert all(p.grad is None for p in model.target_backbone.parameters())
    assert all(p.grad is not None for p in model.backbone.parameters())


def test_bad_queue_size_is_a_config_error():
    with pytest.raises(ConfigError, match=r"method\.queue_size=0 is out of range"):
        resolve_config("moco", overrides=["method.queue_size=0"])


def test_trains_on_synthetic(tmp_path: Path):
    cfg = resolve_config("moco", flags={"data.dataset": "synthetic"},
                         overrides=["train.epochs=1", "method.queue_size=100"])
    full = load_dataset("synthetic", None, seed=0)  # 4 steps of 64 on 256 images
    dataset = replace(full, train_images=full.train_images[:256],
                      train_labels=full.train_labels[:256])
    model = build_method(cfg, dataset.info.channels)
    result = pretrain(cfg, dataset, model, torch.device("cpu"), tmp_path, show_progress=False)
    assert math.isfinite(result.final_loss) and result.steps == 4
    assert model.queue_ptr.item() == (4 * 64) % 100
