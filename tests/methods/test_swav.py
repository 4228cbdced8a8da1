"""SwAV (Caron et al. 2020): Sinkhorn-Knopp (eq. 3, appendix A.1), the swapped prediction
(eqs. 1–2), the queue, multi-crop, prototype freezing, and a couple of training steps."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sslbench.config import RunConfig
from sslbench.data import load_dataset
from sslbench.errors import ConfigError
from sslbench.losses import sinkhorn, swav
from sslbench.methods import build_method
from sslbench.methods.swav import SwAV, swapped_prediction
from sslbench.resolve import resolve_config
from sslbench.train.device import seed_everything
from sslbench.train.loop import pretrain
from sslbench.train.optim import build_optimizer


def transcribed_sinkhorn(scores: torch.Tensor, eps: float, iterations: int) -> torch.Tensor:
    """Appendix A.1 with loops: scale the columns of exp(S/ε) to mass 1/K per prototype, then
    the rows to 1/B per sample; the codes are B times the plan."""
    b, k = scores.shape
    p = [[math.exp(scores[i, j].item() / eps) for j in range(k)] for i in range(b)]
    for _ in range(iterations):
        for j in range(k):
            col = sum(p[i][j] for i in range(b))
            for i in range(b):
                p[i][j] *= (1 / k) / col
        for i in range(b):
            row = sum(p[i])
            p[i] = [x * (1 / b) / row for x in p[i]]
    return torch.tensor(p, dtype=torch.double) * b


def transcribed_swav(predictors: list[torch.Tensor], codes: list[torch.Tensor], tau: float
                     ) -> float:
    """Eqs. 1–2 with loops, averaged over every (code, other crop) pair."""
    terms = []
    for i, q in enumerate(codes):
        for j, s in enumerate(predictors):
            if j == i:
                continue
            b, k = s.shape
            total = 0.0
            for n in range(b):
                log_norm = math.log(sum(math.exp(s[n, c].item() / tau) for c in range(k)))
                total -= sum(q[n, c].item() * (s[n, c].item() / tau - log_norm)
                             for c in range(k))
            terms.append(total / b)
    return sum(terms) / len(terms)


def test_sinkhorn_is_doubly_stochastic() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(8, 5, generator=g)
    q = sinkhorn(scores, epsilon=0.5, iterations=3)
    assert q.shape == (8, 5) and (q >= 0).all()
    torch.testing.assert_close(q.sum(1), torch.ones(8))  # the last step fixes the rows
    q = sinkhorn(scores, epsilon=0.5, iterations=200)  # converged: both marginals
    torch.testing.assert_close(q.sum(1), torch.ones(8))
    torch.testing.assert_close(q.sum(0), torch.full((5,), 8 / 5), atol=1e-4, rtol=0)


def test_sinkhorn_matches_the_appendix_and_is_equivariant() -> None:
    g = torch.Generator().manual_seed(1)
    scores = torch.rand(6, 4, generator=g, dtype=torch.double) * 2 - 1
    for eps, iters in ((0.05, 3), (0.3, 1), (1.0, 10)):
        torch.testing.assert_close(sinkhorn(scores, eps, iters),
                                   transcribed_sinkhorn(scores, eps, iters))
    perm = torch.randperm(6, generator=g)
    torch.testing.assert_close(sinkhorn(scores[perm]), sinkhorn(scores)[perm])
    torch.testing.assert_close(sinkhorn(scores + 3.0), sinkhorn(scores))  # shift-invariant


def test_sinkhorn_equipartitions_a_collapsed_batch() -> None:
    # Every sample prefers prototype 0; the equipartition constraint spreads them anyway.
    scores = torch.tensor([[1.0, 0.0]] * 4)
    q = sinkhorn(scores, epsilon=0.05, iterations=3)
    torch.testing.assert_close(q, torch.full((4, 2), 0.5))


def test_hand_computed_swapped_prediction() -> None:
    # Two samples, two prototypes, each sample on "its" prototype: the codes are one-hot (up to
    # e^−40), so each term is −log softmax((1, −1)/τ)[0] = log(1 + e^{−2/τ}).
    s = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    for tau in (1.0, 0.5):
        expected = math.log(1 + math.exp(-2 / tau))
        assert swav(s, s.clone(), tau).item() == pytest.approx(expected, rel=1e-5)


def test_matches_transcription_with_queue_and_small_crops() -> None:
    g = torch.Generator().manual_seed(2)
    s1, s2 = (torch.rand(5, 3, generator=g, dtype=torch.double) * 2 - 1 for _ in range(2))
    q1, q2 = (torch.rand(7, 3, generator=g, dtype=torch.double) * 2 - 1 for _ in range(2))
    small = [torch.rand(5, 3, generator=g, dtype=torch.double) for _ in range(2)]
    tau, eps = 0.1, 0.05
    codes = [sinkhorn(s1, eps), sinkhorn(s2, eps)]
    assert swav(s1, s2, tau, eps).item() == pytest.approx(
        transcribed_swav([s1, s2], codes, tau))
    # The queue joins Sinkhorn; only the batch rows' codes are used.
    codes = [sinkhorn(torch.cat([s1, q1]), eps)[:5], sinkhorn(torch.cat([s2, q2]), eps)[:5]]
    expected = transcribed_swav([s1, s2, *small], codes, tau)
    got = swav(s1, s2, tau, eps, 3, q1, q2, small_crop_scores=small)
    assert got.item() == pytest.approx(expected)
    assert got.item() != pytest.approx(swav(s1, s2, tau, eps, 3, small_crop_scores=small).item())


def test_gradient_flows_through_predictions_only() -> None:
    g = torch.Generator().manual_seed(3)
    s1 = torch.randn(4, 3, generator=g, dtype=torch.double, requires_grad=True)
    s2 = torch.randn(4, 3, generator=g, dtype=torch.double, requires_grad=True)
    tau = 0.3
    swav(s1, s2, tau).backward()
    # Codes are constants: ∂/∂s1 of ½ ℓ(s1, q2) = ½ (softmax(s1/τ) − q2) / (τ B).
    expected = 0.5 * (torch.softmax(s1.detach() / tau, 1) - sinkhorn(s2.detach())) / (tau * 4)
    torch.testing.assert_close(s1.grad, expected)
    # With the codes held fixed, eq. 2 passes a numerical gradient check.
    codes = sinkhorn(s2.detach())
    assert torch.autograd.gradcheck(lambda a: swapped_prediction(a, codes, tau), (s1,))


def test_batch_permutation_invariance() -> None:
    g = torch.Generator().manual_seed(4)
    s1, s2 = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    perm = torch.randperm(8, generator=g)
    assert torch.allclose(swav(s1[perm], s2[perm]), swav(s1, s2), rtol=1e-5)


def _tiny_swav(*overrides: str) -> tuple[RunConfig, SwAV]:
    cfg = resolve_config("swav", flags={"data.dataset": "synthetic"},
                         overrides=["model.width=8", *overrides])
    model = build_method(cfg, in_channels=1)
    assert isinstance(model, SwAV)
    return cfg, model


def _manual_steps(model: SwAV, cfg: RunConfig, steps: int) -> None:
    """The training loop's order: step, zero_grad, backward, optimizer step, on_train_step_end."""
    optimizer = build_optimizer(model, cfg.optimizer)
    g = torch.Generator().manual_seed(0)
    for step in range(1, steps + 1):
        x1, x2 = torch.randn(2, 16, 1, 28, 28, generator=g)
        loss, _ = model.training_step([x1, x2])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.on_train_step_end(step, 100)


def test_prototypes_frozen_for_the_first_steps() -> None:
    torch.manual_seed(0)
    cfg, model = _tiny_swav("method.freeze_prototypes_steps=2", "optimizer.weight_decay=0.1",
                            "method.num_prototypes=10")
    initial = torch.nn.functional.normalize(model.prototypes.weight.detach().clone(), dim=1)
    backbone_before = next(model.backbone.parameters()).detach().clone()
    _manual_steps(model, cfg, 2)
    torch.testing.assert_close(model.prototypes.weight, initial)  # only renormalised
    assert not torch.equal(next(model.backbone.parameters()), backbone_before)
    _manual_steps(model, cfg, 1)  # steps_done = 2 now: the third step updates them
    assert not torch.allclose(model.prototypes.weight, initial)


def test_queue_fills_first_in_first_out() -> None:
    torch.manual_seed(0)
    cfg, model = _tiny_swav("method.queue_size=40", "method.num_prototypes=10")
    _manual_steps(model, cfg, 2)
    assert model.queued == 32 and model.queue[:, 32:].abs().sum() == 0
    newest = model.queue[:, :16].clone()
    _manual_steps(model, cfg, 1)
    assert model.queued == 40
    torch.testing.assert_close(model.queue[:, 16:32], newest)  # shifted back by one batch
    norms = model.queue.norm(dim=2)
    torch.testing.assert_close(norms, torch.ones_like(norms))  # normalised embeddings


def test_small_crops_join_the_loss() -> None:
    """Views 3 and on (multi-crop, made by the augmentation) only predict codes: they change the
    loss and get gradients, the codes still come from the two global views."""
    torch.manual_seed(0)
    cfg, model = _tiny_swav("augment.small_crops=2", "augment.small_crop_size=12",
                            "method.freeze_prototypes_steps=0")
    assert cfg.augment.num_views == 4
    x1, x2 = torch.randn(2, 8, 1, 28, 28)
    small = [torch.randn(8, 1, 12, 12, requires_grad=True) for _ in range(2)]
    model.eval()  # BatchNorm on batch statistics would mix the crops into the global views
    loss, _ = model.training_step([x1, x2, *small])
    loss.backward()
    assert torch.isfinite(loss) and model.prototypes.weight.grad is not None
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in small)
    assert loss.item() != pytest.approx(model.training_step([x1, x2])[0].item())
    with pytest.raises(ConfigError, match=r"small_crop_min_scale=0.6 is larger"):
        resolve_config("swav", overrides=["augment.small_crop_min_scale=0.6"])
    with pytest.raises(ConfigError, match=r"simclr trains on two views only"):
        resolve_config("simclr", overrides=["augment.small_crops=2"])
    with pytest.raises(ConfigError, match=r"method.sinkhorn_epsilon=0.0 is out of range"):
        resolve_config("swav", overrides=["method.sinkhorn_epsilon=0"])


def test_trains_a_few_steps_on_synthetic(tmp_path: Path) -> None:
    cfg = resolve_config("swav", flags={"data.dataset": "synthetic"}, overrides=[
        "train.epochs=1", "train.batch_size=256", "model.width=8",
        "method.freeze_prototypes_steps=1000"])
    dataset = load_dataset("synthetic", None, seed=0)
    seed_everything(0)
    model = build_method(cfg, dataset.info.channels)
    initial = torch.nn.functional.normalize(model.prototypes.weight.detach().clone(), dim=1)
    result = pretrain(cfg, dataset, model, torch.device("cpu"), tmp_path, show_progress=False)
    assert result.steps == 4 and torch.isfinite(torch.tensor(result.final_loss))
    # Frozen through the real loop (AdamW with weight decay): only renormalised.
    torch.testing.assert_close(model.prototypes.weight, initial)
