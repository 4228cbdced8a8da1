import copy

import torch

from sslbench.losses import byol_loss
from sslbench.methods import build_method
from sslbench.resolve import resolve_config


def test_hand_computed_loss():
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    z = torch.tensor([[0.0, 1.0], [2.0, 0.0], [-3.0, 0.0]])
    # 2 − 2cos: orthogonal → 2, parallel → 0, opposite → 4; mean = 2.
    assert torch.isclose(byol_loss(p, z), torch.tensor(2.0))


def test_loss_is_normalised_mse():
    g = torch.Generator().manual_seed(0)
    p, z = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    pn, zn = p / p.norm(dim=1, keepdim=True), z / z.norm(dim=1, keepdim=True)
    expected = ((pn - zn) ** 2).sum(dim=1).mean()  # BYOL eq. 2
    assert torch.allclose(byol_loss(p, z), expected, atol=1e-6)
    assert torch.allclose(byol_loss(4 * p, 0.1 * z), expected, atol=1e-6)


def test_stop_gradient_on_target():
    p = torch.randn(3, 4, requires_grad=True)
    z = torch.randn(3, 4, requires_grad=True)
    byol_loss(p, z).backward()
    assert p.grad is not None and z.grad is None


def _tiny_byol(**overrides):
    items = ["data.dataset=synthetic", *[f"{k}={v}" for k, v in overrides.items()]]
    return build_method(resolve_config("byol", overrides=items), in_channels=1)


def test_target_gets_no_gradient_and_follows_ema():
    torch.manual_seed(0)
    model = _tiny_byol(**{"method.ema_decay": 0.9})
    x1, x2 = torch.randn(8, 1, 28, 28), torch.randn(8, 1, 28, 28)
    loss, _ = model.training_step([x1, x2])
    loss.backward()
    assert all(p.grad is None for p in model.target_backbone.parameters())
    assert all(p.grad is not None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.predictor.parameters())

    before = copy.deepcopy(model.target_backbone.state_dict())
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(1.0)
    logs = model.on_train_step_end(step=0, total_steps=10)
    assert logs["ema_decay"] == 0.9
    online = dict(model.backbone.named_parameters())
    for name, p in model.target_backbone.named_parameters():
        assert torch.allclose(p, 0.9 * before[name] + 0.1 * online[name], atol=1e-6)


def test_frozen_target_with_decay_one():
    model = _tiny_byol(**{"method.ema_decay": 1.0})
    before = [p.clone() for p in model.target_projector.parameters()]
    with torch.no_grad():
        for p in model.projector.parameters():
            p.mul_(2.0)
    model.on_train_step_end(step=3, total_steps=10)
    assert all(torch.equal(a, b) for a, b in zip(before, model.target_projector.parameters(),
                                                 strict=True))
