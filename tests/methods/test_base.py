"""The base every method shares: ``model.forward_views`` (joint or separate passes of the views),
applied once in ``Method.forward_views`` for every method."""

from __future__ import annotations

import pytest
import torch

from sslbench.errors import ConfigError
from sslbench.methods import build_method, get_method_spec, method_names
from sslbench.resolve import resolve_config

FLAGS = {"data.dataset": "synthetic"}
SHARED = [n for n in method_names() if get_method_spec(n).method_cls.default_views_mode is not None]


def _method(name: str, *overrides: str) -> torch.nn.Module:
    small = (["augment.small_crops=2", "augment.small_crop_size=8"]
             if get_method_spec(name).method_cls.multi_crop else [])
    cfg = resolve_config(name, flags=FLAGS, overrides=["model.width=4", *small, *overrides])
    torch.manual_seed(0)
    return build_method(cfg, 3).train()


def test_separate_batch_statistics_are_per_view() -> None:
    # The backbone has BatchNorm: in one joint pass view 1's output depends on view 2's content
    # (shared statistics); in separate passes it does not (solo-learn, BYOL's JAX code).
    g = torch.Generator().manual_seed(0)
    v1, v2 = torch.rand(6, 3, 16, 16, generator=g), torch.rand(6, 3, 16, 16, generator=g)
    other = v2 * 3 + 1
    for mode, depends in (("joint", True), ("separate", False)):
        method = _method("simclr", f"model.forward_views={mode}")
        with torch.no_grad():
            a = method.forward_views(method.backbone, [v1, v2])[0]
            b = method.forward_views(method.backbone, [v1, other])[0]
        assert torch.equal(a, b) is not depends, mode
        if mode == "separate":
            torch.testing.assert_close(a, method.backbone(v1), rtol=0, atol=0)


def test_defaults_are_each_methods_own() -> None:
    assert resolve_config("simclr", flags=FLAGS).model.forward_views is None
    assert _method("simclr").views_mode == "joint"
    assert _method("barlow").views_mode == "separate"  # as their reference code
    assert _method("vicreg").views_mode == "separate"
    assert _method("barlow", "model.forward_views=joint").views_mode == "joint"


@pytest.mark.parametrize("name", SHARED)
@pytest.mark.parametrize("mode", ["joint", "separate"])
def test_every_method_forwards_through_the_switch(name: str, mode: str) -> None:
    method = _method(name, f"model.forward_views={mode}")
    batches: list[int] = []
    method.backbone.register_forward_hook(lambda m, args, out: batches.append(args[0].shape[0]))
    views = [torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)]
    if get_method_spec(name).method_cls.multi_crop:
        views += [torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)]
    loss, _ = method.training_step(views)
    loss.backward()
    assert torch.isfinite(loss)
    small = len(views) - 2
    expected = [4] * len(views) if mode == "separate" else [8] + ([4 * small] if small else [])
    assert batches == expected


def test_refused_where_the_views_take_different_networks() -> None:
    with pytest.raises(ConfigError, match=r"model\.forward_views=joint: infomax"):
        resolve_config("infomax", flags=FLAGS, overrides=["model.forward_views=joint"])
    with pytest.raises(ConfigError, match="choose one of joint, separate"):
        resolve_config("simclr", flags=FLAGS, overrides=["model.forward_views=mixed"])
