"""DINO (Caron et al., ICCV 2021): the loss against Algorithm 1 written out, centring, the
teacher, and multi-crop training end to end through the loop."""

import math
from pathlib import Path

import pytest
import torch

from sslbench.data import load_dataset
from sslbench.losses import dino_loss
from sslbench.methods import build_method
from sslbench.methods.dino import DINO
from sslbench.resolve import resolve_config
from sslbench.train.device import seed_everything
from sslbench.train.loop import pretrain


def transcribed_dino(student, teacher, center, tps, tpt):
    """Algorithm 1 with the reference code's multi-crop loop: every (teacher view i, student view
    j ≠ i) pair, H(t, s) = −Σ_k softmax((t − C)/τ_t)_k log softmax(s/τ_s)_k, mean over the batch,
    then over the pairs."""
    total, terms = 0.0, 0
    for i, t in enumerate(teacher):
        for j, s in enumerate(student):
            if i == j:
                continue
            for b in range(t.shape[0]):
                q = [math.exp((t[b, k] - center[0, k]) / tpt) for k in range(t.shape[1])]
                p = [math.exp(s[b, k] / tps) for k in range(s.shape[1])]
                total -= sum(q[k] / sum(q) * math.log(p[k] / sum(p)) for k in range(len(q))
                             ) / t.shape[0]
            terms += 1
    return total / terms


def test_hand_computed_case() -> None:
    # One sample, K = 2, τ_s = τ_t = 1, C = 0: teacher views (0, 0) → q = (½, ½) and (ln 3, 0)
    # → q = (¾, ¼); student views (0, 0) and (ln 3, 0), the second pair crossed:
    # H(q₁, s₂) = −½ log ¾ − ½ log ¼ and H(q₂, s₁) = log 2, mean of the two.
    ln3 = math.log(3)
    t = [torch.tensor([[0.0, 0.0]]), torch.tensor([[ln3, 0.0]])]
    s = [torch.tensor([[0.0, 0.0]]), torch.tensor([[ln3, 0.0]])]
    expected = ((-0.5 * math.log(0.75) - 0.5 * math.log(0.25)) + math.log(2)) / 2
    got = dino_loss(s, t, torch.zeros(1, 2), 1.0, 1.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_matches_transcription_with_small_crops_and_centre() -> None:
    g = torch.Generator().manual_seed(0)
    teacher = [torch.randn(3, 5, generator=g) for _ in range(2)]
    student = [torch.randn(3, 5, generator=g) for _ in range(4)]  # 2 global + 2 small crops
    center = torch.randn(1, 5, generator=g)
    got = dino_loss(student, teacher, center, 0.1, 0.04)
    assert got.item() == pytest.approx(transcribed_dino(student, teacher, center, 0.1, 0.04),
                                       rel=1e-5)


def test_no_gradient_reaches_the_teacher_and_centring_is_shift_invariant() -> None:
    t = [torch.randn(4, 6, requires_grad=True) for _ in range(2)]
    s = [torch.randn(4, 6, requires_grad=True) for _ in range(3)]
    center = torch.randn(1, 6)
    dino_loss(s, t, center, 0.1, 0.04).backward()
    assert all(x.grad is None for x in t) and all(x.grad is not None for x in s)
    # softmax((t − C)/τ) ignores a constant added to every logit of t and C alike
    shifted = [x.detach() + 3.0 for x in t]
    torch.testing.assert_close(dino_loss(s, shifted, center + 3.0, 0.1, 0.04),
                               dino_loss(s, t, center, 0.1, 0.04))


def _tiny(*overrides: str) -> DINO:
    cfg = resolve_config("dino", flags={"data.dataset": "synthetic"},
                         overrides=["model.width=8", "method.num_prototypes=16", *overrides])
    model = build_method(cfg, in_channels=1)
    assert isinstance(model, DINO)
    return model


def test_centre_follows_the_teacher_outputs_and_teacher_follows_by_ema() -> None:
    torch.manual_seed(0)
    model = _tiny("method.center_momentum=0.9", "method.ema_decay=0.5", "method.ema_final=0.5")
    views = [torch.randn(6, 1, 28, 28), torch.randn(6, 1, 28, 28)]
    with torch.no_grad():
        expected = 0.1 * model._teacher(torch.cat(views)).mean(dim=0, keepdim=True)
    model.training_step(views)
    torch.testing.assert_close(model.center, expected)
    student = model.prototypes.weight.detach().clone()
    teacher = model.target_prototypes.weight.detach().clone()
    with torch.no_grad():
        model.prototypes.weight.add_(1.0)
    model.on_train_step_end(1, 10)  # τ = 0.5: the teacher moves half way
    torch.testing.assert_close(model.target_prototypes.weight, (teacher + student + 1.0) / 2)
    assert not any(p.requires_grad for p in model.target_backbone.parameters())


def test_trains_with_small_crops_through_the_loop(tmp_path: Path) -> None:
    cfg = resolve_config("dino", flags={"data.dataset": "synthetic"}, overrides=[
        "train.epochs=1", "train.batch_size=64", "model.width=8", "method.num_prototypes=32",
        "augment.small_crops=2", "augment.small_crop_size=8", "method.freeze_prototypes_steps=2"])
    assert cfg.augment.num_views == 4
    dataset = load_dataset("synthetic", None, seed=0)
    seed_everything(0)
    model = build_method(cfg, dataset.info.channels)
    frozen = model.prototypes.weight.detach().clone()
    result = pretrain(cfg, dataset, model, torch.device("cpu"), tmp_path, show_progress=False)
    assert result.steps > 2 and math.isfinite(result.final_loss)
    assert not torch.equal(model.prototypes.weight, frozen)  # unfrozen after 2 steps
    assert model.steps_done == result.steps
