"""The one MLP head every method builds its projector/predictor from."""

from __future__ import annotations

import torch
from torch import nn

from sslbench.models.heads import MLP


def _kinds(mlp: MLP) -> list[str]:
    return [type(m).__name__ for m in mlp.net]


def test_default_shape_is_unchanged() -> None:
    mlp = MLP(8, 16, 4, 2)
    assert _kinds(mlp) == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert mlp.net[0].bias is None and mlp.net[-1].bias is not None
    assert set(mlp.state_dict()) == {"net.0.weight", "net.1.weight", "net.1.bias",
                                     "net.1.running_mean", "net.1.running_var",
                                     "net.1.num_batches_tracked", "net.3.weight", "net.3.bias"}
    assert mlp(torch.randn(5, 8)).shape == (5, 4) and mlp.out_dim == 4


def test_barlow_style_three_layers_without_last_bias() -> None:
    mlp = MLP(8, 16, 16, 3, last_bias=False)
    assert _kinds(mlp) == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear"]
    assert mlp.net[-1].bias is None


def test_last_batchnorm_with_and_without_affine() -> None:
    mlp = MLP(8, 16, 4, 2, last_bn=True, last_bn_affine=False)
    assert _kinds(mlp)[-2:] == ["Linear", "BatchNorm1d"]
    last = mlp.net[-1]
    assert isinstance(last, nn.BatchNorm1d) and not last.affine
    assert mlp.net[-2].bias is None  # the BatchNorm cancels a bias
    out = mlp.train()(torch.randn(32, 8))
    torch.testing.assert_close(out.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    assert MLP(8, 16, 4, 2, last_bn=True).net[-1].affine
    assert _kinds(MLP(8, 16, 4, 1)) == ["Linear"]


def test_hidden_layers_without_batchnorm() -> None:
    # SimCLR's g(h) = W2 σ(W1 h) as solo-learn builds it: Linear (with bias) → ReLU → Linear.
    mlp = MLP(8, 16, 4, 2, hidden_bn=False)
    assert _kinds(mlp) == ["Linear", "ReLU", "Linear"]
    assert mlp.net[0].bias is not None and mlp.net[-1].bias is not None
    assert _kinds(MLP(8, 16, 4, 3, hidden_bn=False)) == ["Linear", "ReLU"] * 2 + ["Linear"]
    assert _kinds(MLP(8, 16, 4, 2, hidden_bn=True)) == _kinds(MLP(8, 16, 4, 2))


def test_model_projector_bn_reaches_every_projector() -> None:
    from sslbench.methods import build_method
    from sslbench.resolve import resolve_config

    flags = {"data.dataset": "synthetic"}
    default = build_method(resolve_config("simclr", flags=flags), 3).projector
    assert resolve_config("simclr", flags=flags).model.projector_bn is True
    assert _kinds(default) == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    plain = build_method(resolve_config("simclr", flags=flags,
                                        overrides=["model.projector_bn=false"]), 3).projector
    assert _kinds(plain) == ["Linear", "ReLU", "Linear"]
