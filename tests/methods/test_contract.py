"""The method contract: every registered method keeps it, and a new method needs only its file,
one registry line and its test (the steps of docs/adding-a-method.md, followed here)."""

import dataclasses
import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import sslbench.losses
from sslbench.cli import main
from sslbench.config import RunConfig
from sslbench.methods import _MODULES, FAMILIES, build_method, get_method_spec, method_names
from sslbench.methods.base import Method
from sslbench.resolve import resolve_config
from sslbench.store import Store
from sslbench.sweep.space import space_for
from sslbench.sweep.worker import SweepJob, check_job


@pytest.mark.parametrize("name", method_names())
def test_every_method_keeps_the_contract(name: str) -> None:
    spec = get_method_spec(name)
    assert spec.name == name == spec.config_cls().name
    assert spec.family in FAMILIES
    assert issubclass(spec.method_cls, Method)
    assert spec.losses and all(fn.__doc__ for fn in spec.losses)  # each cites its equation
    small = ["augment.small_crops=2", "augment.small_crop_size=12"] if spec.method_cls.multi_crop \
        else []
    cfg = resolve_config(name, flags={"data.dataset": "synthetic"},
                         overrides=["model.width=4", *small])
    torch.manual_seed(0)
    method = build_method(cfg, in_channels=1)
    views = [torch.randn(8, 1, 28, 28), torch.randn(8, 1, 28, 28)]
    views += [torch.randn(8, 1, 12, 12) for _ in range(cfg.augment.small_crops)]
    loss, logs = method.training_step(views)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert isinstance(method.on_train_step_end(1, 10), dict) and isinstance(logs, dict)


TOY_METHOD = '''
"""Toy: multi-crop alignment with uniformity (a test method; Wang & Isola 2020, §4.1)."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sslbench.config import RunConfig, bounded
from sslbench.methods import MethodSpec
from sslbench.methods.base import Method, StepOutput


@dataclass
class ToyConfig:
    name: str = "toy"
    weight: float = bounded(1.0, lo=0.0)  # of the uniformity term


def toy_loss(anchor: torch.Tensor, others: list[torch.Tensor], weight: float) -> torch.Tensor:
    """Mean squared distance of l2-normalised views to the anchor view (alignment, α = 2)
    plus ``weight`` times the anchor's uniformity log E exp(−2‖u − v‖²)."""
    a = F.normalize(anchor, dim=1)
    align = torch.stack([(a - F.normalize(o, dim=1)).pow(2).sum(1).mean() for o in others])
    return align.mean() + weight * torch.pdist(a).pow(2).mul(-2).exp().mean().log()


class Toy(Method):
    multi_crop = True

    def __init__(self, cfg: RunConfig, backbone: nn.Module) -> None:
        super().__init__(cfg, backbone)
        self.projector = self.make_projector(cfg.model)

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        z = [self.projector(self.backbone(v)) for v in views]
        return toy_loss(z[0], z[1:], self.cfg.weight), {}


SPEC = MethodSpec(name="toy", paper="a test method", family="contrastive", config_cls=ToyConfig,
                  method_cls=Toy, losses=(toy_loss,))
'''


def test_a_new_method_is_its_file_and_one_registry_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "toy_method.py").write_text(textwrap.dedent(TOY_METHOD))  # 1. its file
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(_MODULES, "toy", "toy_method")  # 2. one registry line
    monkeypatch.chdir(tmp_path)
    sslbench.losses._functions.cache_clear()
    try:
        # it is listed, with its loss in the public API
        assert main(["methods", "--json"]) == 0
        listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
        assert listed["toy"]["losses"] == ["toy_loss"] and listed["toy"]["multi_crop"]
        assert sslbench.losses.toy_loss.__module__ == "toy_method"
        # it pretrains end to end with multi-crop views, evaluated and recorded like any method
        db = str(tmp_path / "r.sqlite")
        assert main(["pretrain", "toy", "--dataset", "synthetic", "--db", db, "--quiet",
                     "--eval", "linear,knn", "augment.small_crops=2", "train.epochs=1"]) == 0
        with Store.open(db, create=False) as store:
            runs = {r.kind: r for r in store.list_runs()}
        assert runs["pretrain"].status == "COMPLETED" and runs["pretrain"].method == "toy"
        assert {"linear", "knn"} <= set(runs)
        assert runs["pretrain"].config["augment"]["small_crops"] == 2
        # it can be swept: without a space file of its own it gets the default space
        space = space_for("toy")
        assert space.method == "toy" and "optimizer.lr" in {p.key for p in space.params}
        check_job(SweepJob("toy-synthetic", space.with_fixed({"data.dataset": "synthetic"}),
                           db, None))
    finally:
        sslbench.losses._functions.cache_clear()
        sys.modules.pop("toy_method", None)


def test_stored_configs_of_earlier_versions_still_resolve() -> None:
    """SwAV's small-crop keys moved from method.* to augment.*: a stored config with the old
    keys is rebuilt with the new ones (its encoder can still be evaluated)."""
    from sslbench.resolve import config_from_dict

    stored = resolve_config("swav").to_dict()
    stored["method"] |= {"num_small_crops": 0, "small_crop_size": 14,
                         "small_crop_min_scale": 0.2, "small_crop_max_scale": 0.5}
    del stored["augment"]["small_crops"], stored["augment"]["small_crop_size"]
    cfg: RunConfig = config_from_dict(stored)
    assert (cfg.augment.small_crops, cfg.augment.small_crop_size) == (0, 14)
    assert "num_small_crops" not in dataclasses.asdict(cfg.method)
