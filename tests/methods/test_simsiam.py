"""SimSiam: negative cosine with stop-gradient (eqs. 1, 4), the collapse switches, and BYOL with
a shared-weight target (τ = 0) training exactly like SimSiam. The collapse without stop-gradient
itself takes hundreds of steps; it is shown on Fashion-MNIST (see the README table)."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from sslbench.data import load_dataset
from sslbench.losses import negative_cosine, simsiam_loss
from sslbench.methods import build_method
from sslbench.resolve import resolve_config
from sslbench.train.loop import pretrain


def test_hand_computed_case():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z = torch.tensor([[3.0, 0.0], [1.0, 0.0]])
    # D: parallel → −1, orthogonal → 0; mean −0.5.
    assert math.isclose(negative_cosine(p, z).item(), -0.5, rel_tol=1e-6)
    # eq. 4: ½ D(p₁, z₂) + ½ D(p₂, z₁) with p₁ ∥ z₂ and p₂ ⟂ z₁.
    p1, z2 = torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, 2.0]])
    p2, z1 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 5.0]])
    assert math.isclose(simsiam_loss(p1, p2, z1, z2).item(), -0.5, rel_tol=1e-6)


def test_transcription_and_invariances():
    g = torch.Generator().manual_seed(0)
    p1, p2, z1, z2 = (torch.randn(6, 5, generator=g) for _ in range(4))

    def d(p, z):  # eq. 1 row by row
        cosines = [torch.dot(p[i] / p[i].norm(), z[i] / z[i].norm()) for i in range(len(p))]
        return -sum(cosines) / len(p)

    base = simsiam_loss(p1, p2, z1, z2)
    assert torch.allclose(base, d(p1, z2) / 2 + d(p2, z1) / 2, atol=1e-6)
    perm = torch.randperm(6, generator=g)
    assert torch.allclose(simsiam_loss(p1[perm], p2[perm], z1[perm], z2[perm]), base, atol=1e-6)
    assert torch.allclose(simsiam_loss(3 * p1, p2, z1, 0.1 * z2), base, atol=1e-6)


def test_stop_gradient_switch():
    p1, p2, z1, z2 = (torch.randn(4, 3, requires_grad=True) for _ in range(4))
    simsiam_loss(p1, p2, z1, z2).backward()
    assert p1.grad is not None and z1.grad is None and z2.grad is None
    simsiam_loss(p1, p2, z1, z2, stop_gradient=False).backward()
    assert z1.grad is not None and z2.grad is not None


def _tiny(method: str, *overrides: str):
    cfg = resolve_config(method, overrides=["data.dataset=synthetic", *overrides])
    return build_method(cfg, in_channels=1)


def test_model_gradients_follow_the_switches():
    x1, x2 = torch.randn(8, 1, 28, 28), torch.randn(8, 1, 28, 28)
    model = _tiny("simsiam")
    loss, _ = model.training_step([x1, x2])
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert isinstance(_tiny("simsiam", "method.use_predictor=false").predictor, nn.Identity)


def test_byol_with_shared_weight_target_is_simsiam():
    """BYOL with τ = 0 throughout: its target is the online network itself (shared weights), so
    its loss is SimSiam's up to BYOL's constant affine form ‖p̄ − z̄‖² = 2 − 2cos (eq. 2):
    L_BYOL = 4 + 4 · L_SimSiam, and with lr / 4 plain SGD follows SimSiam's trajectory exactly."""
    torch.manual_seed(0)
    byol = _tiny("byol", "method.ema_decay=0", "method.ema_final=0")
    simsiam = _tiny("simsiam")
    simsiam.backbone = copy.deepcopy(byol.backbone)
    simsiam.projector = copy.deepcopy(byol.projector)
    simsiam.predictor = copy.deepcopy(byol.predictor)
    opt_byol = torch.optim.SGD([p for p in byol.parameters() if p.requires_grad], lr=0.05 / 4)
    opt_simsiam = torch.optim.SGD(simsiam.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1)
    for step in range(3):
        x1, x2 = torch.randn(8, 1, 28, 28, generator=g), torch.randn(8, 1, 28, 28, generator=g)
        loss_byol, _ = byol.training_step([x1, x2])
        loss_simsiam, _ = simsiam.training_step([x1, x2])
        assert torch.allclose(loss_byol, 4 + 4 * loss_simsiam, atol=1e-5)
        for opt, loss in ((opt_byol, loss_byol), (opt_simsiam, loss_simsiam)):
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert byol.on_train_step_end(step + 1, 3)["ema_decay"] == 0.0
    for name, p in simsiam.named_parameters():
        torch.testing.assert_close(dict(byol.named_parameters())[name], p, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_trains_on_synthetic(tmp_path: Path, stop_gradient: bool):
    cfg = resolve_config("simsiam", flags={"data.dataset": "synthetic"},
                         overrides=["train.epochs=1", f"method.stop_gradient={stop_gradient}"])
    full = load_dataset("synthetic", None, seed=0)  # 4 steps of 64 on 256 images
    dataset = replace(full, train_images=full.train_images[:256],
                      train_labels=full.train_labels[:256])
    model = build_method(cfg, dataset.info.channels)
    result = pretrain(cfg, dataset, model, torch.device("cpu"), tmp_path, show_progress=False)
    assert math.isfinite(result.final_loss) and -1 <= result.final_loss <= 0


def test_projector_last_bn_affine_switch():
    # The official code and solo-learn end the projector in BatchNorm1d(dim, affine=False).
    flags = {"data.dataset": "synthetic"}
    default = build_method(resolve_config("simsiam", flags=flags), 3).projector.net[-1]
    assert isinstance(default, nn.BatchNorm1d) and default.affine  # as before
    plain = build_method(resolve_config("simsiam", flags=flags,
                                        overrides=["method.projector_last_bn_affine=false"]), 3)
    last = plain.projector.net[-1]
    assert isinstance(last, nn.BatchNorm1d) and not last.affine
    assert last.weight is None and last.bias is None
