"""Fine-tuning trains the encoder; a linear probe leaves it frozen; layers read the right output."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sslbench.config import LinearEvalConfig, ModelConfig, build_config
from sslbench.data.augment import normalize
from sslbench.data.synthetic import make_synthetic
from sslbench.errors import UserError
from sslbench.eval.features import extract_features
from sslbench.eval.finetune import FinetuneSettings, finetune
from sslbench.eval.layers import feature_module
from sslbench.eval.linear import linear_probe
from sslbench.methods import build_method, get_method_spec
from sslbench.models import build_backbone

MEAN, STD = (0.5,), (0.19,)


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, ...]:
    train_x, train_y, test_x, test_y = make_synthetic(0)
    return train_x[:200], train_y[:200], test_x[:100], test_y[:100]


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_finetuning_updates_a_copy_of_the_encoder(data: tuple[torch.Tensor, ...]) -> None:
    torch.manual_seed(0)
    encoder = build_backbone(ModelConfig(width=8), in_channels=1)
    before = _state(encoder)
    cfg = FinetuneSettings(steps=30, batch_size=64, lr=3e-3, weight_decay=0.0, augment=True)
    result, model = finetune(encoder, encoder.out_dim, data[0], data[1], data[2], data[3], 10,
                             MEAN, STD, cfg, torch.device("cpu"))
    # the caller's encoder is untouched, the fine-tuned copy moved
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    after = model.encoder.state_dict()
    moved = [k for k in before if before[k].is_floating_point()
             and not torch.allclose(before[k], after[k])]
    assert any("weight" in k for k in moved)
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0
    assert result["top1"] > 0.3  # synthetic textures are easy; chance is 0.1


def test_linear_probe_does_not_change_the_encoder(data: tuple[torch.Tensor, ...]) -> None:
    torch.manual_seed(0)
    encoder = build_backbone(ModelConfig(width=8), in_channels=1).train()
    before = _state(encoder)
    train_f = extract_features(encoder, data[0], MEAN, STD, torch.device("cpu"))
    test_f = extract_features(encoder, data[2], MEAN, STD, torch.device("cpu"))
    cfg = LinearEvalConfig(epochs=5, batchnorm=True)
    result = linear_probe(train_f, data[1], test_f, data[3], 10, cfg)
    # BatchNorm running statistics of the encoder are not updated either (eval mode)
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    assert encoder.training
    assert {"top1", "top5", "train_top1"} <= set(result)


def test_linear_probe_with_augmented_features(data: tuple[torch.Tensor, ...]) -> None:
    train_f, test_f = torch.randn(200, 6), torch.randn(100, 6)
    calls = []

    def augmented(idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        calls.append(idx.shape[0])
        return train_f[idx] + 0.01 * torch.randn(idx.shape[0], 6, generator=gen)

    cfg = LinearEvalConfig(epochs=2, batch_size=64, augment=True)
    linear_probe(train_f, data[1], test_f, data[3], 10, cfg, augmented_features=augmented)
    assert calls == [64, 64, 64, 8] * 2


def _simclr(width: int = 8) -> nn.Module:
    spec = get_method_spec("simclr")
    cfg = build_config(spec.config_cls, {"model.width": width, "model.projector_dim": 5,
                                         "model.projector_hidden_dim": 16})
    return build_method(cfg, in_channels=1).eval()


@pytest.mark.parametrize(("layer", "dim"), [("backbone", 32), ("stage1", 8), ("stage2", 16),
                                            ("stage3", 32), ("projector", 5),
                                            ("backbone:gap", 32), ("backbone:grid2", 32 * 4),
                                            ("backbone:grid3", 32 * 9), ("stage2:grid3", 16 * 9)])
def test_layers_read_the_named_output(layer: str, dim: int) -> None:
    method = _simclr()
    x = torch.randn(4, 1, 28, 28)
    out = feature_module(method, layer)(x)
    assert out.shape == (4, dim)
    if layer in ("stage3", "backbone:gap"):  # the last stage, pooled, is the backbone output
        assert torch.allclose(out, method.backbone(x))
    if layer == "projector":
        assert torch.allclose(out, method.projector(method.backbone(x)))


def test_a_grid_readout_is_the_mean_of_each_cell_of_the_last_map() -> None:
    method = _simclr()
    x = torch.randn(3, 1, 24, 24)  # a 6×6 last map: 2×2 cells of 3×3 positions each
    fmap = method.backbone.stages(x)
    assert fmap.shape[-2:] == (6, 6)
    out = feature_module(method, "backbone:grid2")(x).view(3, fmap.shape[1], 2, 2)
    for i in range(2):
        for j in range(2):
            cell = fmap[:, :, 3 * i:3 * i + 3, 3 * j:3 * j + 3].mean(dim=(2, 3))
            assert torch.allclose(out[:, :, i, j], cell, atol=1e-6)
    # equal cells: their mean is the global average, the backbone's own output
    assert torch.allclose(out.mean(dim=(2, 3)), method.backbone(x), atol=1e-6)


@pytest.mark.parametrize(("layer", "needle"), [("stage4", "3 stages"), ("head", "unknown layer"),
                                               ("stage0", "unknown layer"),
                                               ("stage4:grid2", "3 stages"),
                                               ("projector:grid2", "no grid"),
                                               ("backbone:grid9", "unknown layer"),
                                               ("backbone:max", "unknown layer")])
def test_unknown_layers_are_user_errors(layer: str, needle: str) -> None:
    with pytest.raises(UserError, match=needle):
        feature_module(_simclr(), layer)


def test_feature_module_shares_the_weights() -> None:
    method = _simclr()
    module = feature_module(method, "stage2")
    clone = copy.deepcopy(method)
    with torch.no_grad():
        method.backbone.stages[0][0].weight.mul_(2)
    x = torch.randn(2, 1, 28, 28)
    assert not torch.allclose(module(x), feature_module(clone, "stage2")(x))


def test_features_are_the_same_in_the_channels_last_layout_and_leave_the_model_as_it_was() -> None:
    from sslbench.eval.features import channels_last
    from sslbench.models.backbones import ConvNet

    torch.manual_seed(0)
    net = ConvNet(1, 8).train()
    images = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8)
    got = extract_features(net, images, MEAN, STD, torch.device("cpu"), batch_size=16)
    net.eval()
    with torch.no_grad():  # the plain NCHW forward, batch by batch
        expected = torch.cat([net(normalize(images[i:i + 16], MEAN, STD))
                              for i in range(0, 40, 16)])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # the model keeps its layout (a run still training keeps its numerics) and its mode
    assert net.train().training and all(p.is_contiguous() for p in net.parameters())
    converted = channels_last(net)
    assert converted is not net and converted.stages[0][0].weight.is_contiguous(
        memory_format=torch.channels_last)
    assert channels_last(converted) is converted  # already in the layout: no copy
