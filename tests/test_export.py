"""`sslbench export` and `sslbench.load_encoder`: every format gives back the run's features."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import sslbench
from sslbench.cli import main
from sslbench.config import ModelConfig
from sslbench.errors import UserError
from sslbench.export import torchvision_names, torchvision_recipe
from sslbench.models import build_backbone


def _batch(channels: int = 1, side: int = 28) -> torch.Tensor:
    return torch.randint(0, 256, (6, channels, side, side), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(1))


def _reference(db: str, run_id: int, images: torch.Tensor) -> torch.Tensor:
    """The run's features computed as the evaluation protocols do: the method's backbone from the
    checkpoint, in eval mode, on images normalised by the dataset's statistics."""
    from sslbench.data import get_info
    from sslbench.data.augment import normalize
    from sslbench.methods import build_method
    from sslbench.resolve import config_from_dict
    from sslbench.store import Store
    from sslbench.train.checkpoint import load_checkpoint

    with Store.open(db) as store:
        run = store.get_run(run_id)
    cfg = config_from_dict(run.config)
    info = get_info(cfg.data.dataset)
    method = build_method(cfg, info.channels)
    method.load_state_dict(load_checkpoint(run.artifacts[0].path)["method"])
    with torch.no_grad():
        return method.backbone.eval()(normalize(images, info.mean, info.std))


def test_load_encoder_of_a_run_gives_the_backbone_with_its_normalisation(
        tmp_path: Path, trained_run: Callable[..., int]) -> None:
    db = str(tmp_path / "r.sqlite")
    run_id = trained_run(db, tmp_path / "runs")
    encoder = sslbench.load_encoder(run_id, db=db)
    assert not encoder.training and encoder.in_channels == 1 and encoder.image_size == 28
    images = _batch()
    with torch.no_grad():
        features = encoder(images)
        assert torch.equal(features, _reference(db, run_id, images))
        assert torch.allclose(encoder(images.float() / 255), features, atol=1e-6)
    assert encoder.metadata["run"]["id"] == run_id
    assert encoder.metadata["config"]["method"]["name"] == "simclr"


@pytest.mark.parametrize("fmt", ["safetensors", "torchscript"])
def test_each_format_loads_back_to_identical_features(
        tmp_path: Path, trained_run: Callable[..., int], fmt: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "r.sqlite")
    run_id = trained_run(db, tmp_path / "runs")
    out = tmp_path / f"encoder.{fmt}"
    assert main(["export", str(run_id), "--db", db, "--format", fmt, "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    images = _batch()
    with torch.no_grad():
        assert torch.equal(sslbench.load_encoder(out)(images),
                           sslbench.load_encoder(run_id, db=db)(images))
    assert sslbench.load_encoder(out).metadata["run"]["dataset"] == "synthetic"


def test_safetensors_export_needs_no_pickle(tmp_path: Path,
                                            trained_run: Callable[..., int]) -> None:
    """The file is a safetensors header (JSON, the metadata inside) and raw tensors."""
    from safetensors import safe_open

    db = str(tmp_path / "r.sqlite")
    path = sslbench.export_encoder(trained_run(db, tmp_path / "runs"), tmp_path / "e.st", db=db)
    with safe_open(str(path), framework="pt") as file:
        metadata = json.loads(file.metadata()["sslbench"])
        assert "stages.0.0.weight" in file.keys()  # noqa: SIM118 (not a dict)
    assert metadata["layout"] == "sslbench" and metadata["model"]["backbone"] == "convnet"
    assert metadata["mean"] == [0.5] and metadata["in_channels"] == 1
    assert metadata["config"]["data"]["dataset"] == "synthetic"


@pytest.mark.parametrize(("backbone", "stem", "channels"), [
    ("resnet18", "cifar", 1), ("resnet18", "imagenet", 3), ("resnet50", "imagenet", 3),
    ("resnet50", "cifar", 3)])
def test_torchvision_names_load_into_torchvision_resnets(backbone: str, stem: str,
                                                         channels: int) -> None:
    """Bit-identical outputs of torchvision's model, set up by the recipe the export states."""
    torch.manual_seed(0)
    model_cfg = ModelConfig(backbone=backbone, width=64, stem=stem)
    ours = build_backbone(model_cfg, channels)
    for module in ours.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    state = ours.state_dict()
    names = torchvision_names(state, backbone)
    scope = {"PATH": None}
    recipe = torchvision_recipe(model_cfg, channels)
    exec(recipe.replace("load_file(PATH)", "TENSORS"),
         scope | {"TENSORS": {names[k]: v for k, v in state.items()}}, scope)
    theirs = scope["model"].eval()
    x = torch.randn(2, channels, 40, 40)
    with torch.no_grad():
        assert torch.equal(theirs(x), ours.eval()(x))


def test_export_refuses_what_does_not_fit(tmp_path: Path,
                                          trained_run: Callable[..., int]) -> None:
    db = str(tmp_path / "r.sqlite")
    convnet = trained_run(db, tmp_path / "runs")
    narrow = trained_run(db, tmp_path / "runs", **{"model.backbone": "resnet18",
                                                   "model.width": 8})
    with pytest.raises(UserError, match="ResNet"):
        sslbench.export_encoder(convnet, tmp_path / "a", "torchvision", db=db)
    with pytest.raises(UserError, match="width=8"):
        sslbench.export_encoder(narrow, tmp_path / "b", "torchvision", db=db)
    with pytest.raises(UserError, match="is a folder"):
        sslbench.export_encoder(convnet, tmp_path, db=db)
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(UserError, match="not an encoder"):
        sslbench.load_encoder(tmp_path / "junk.safetensors")
    with pytest.raises(UserError, match="no encoder file"):
        sslbench.load_encoder(tmp_path / "missing.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.safetensors", "r.sqlite",
                                                          "runs"]


@pytest.mark.multiprocess
def test_importing_the_package_root_stays_light(repo: Path) -> None:
    code = ("import sys, sslbench, sslbench.config\n"
            "print(sorted(m for m in ('torch', 'sslbench.export') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.strip() == "[]"


_FRESH_PROCESS = """
import json, sys, warnings
import torch
warnings.simplefilter("ignore", FutureWarning)
import sslbench
images = torch.load(sys.argv[1])
normalised = torch.load(sys.argv[2])
out = {}
for name in ("safetensors", "torchscript"):
    out[name] = sslbench.load_encoder(sys.argv[3 + len(out)])(images)
out["jit"] = torch.jit.load(sys.argv[4])(images)
scope = {"PATH": sys.argv[5]}
with open(sys.argv[6]) as file:
    exec(json.load(file), scope)
out["torchvision"] = scope["model"].eval()(normalised)
torch.save({k: v.detach() for k, v in out.items()}, sys.argv[7])
"""


@pytest.mark.multiprocess
def test_export_then_load_in_a_fresh_process_gives_identical_features(
        tmp_path: Path, trained_run: Callable[..., int], repo: Path) -> None:
    """The issue's test: a ResNet-18 run exported in every format, loaded by a new Python process
    (TorchScript and torchvision without sslbench's code), gives the run's features exactly."""
    from sslbench.data.augment import normalize

    db = str(tmp_path / "r.sqlite")
    run_id = trained_run(db, tmp_path / "runs", **{"model.backbone": "resnet18",
                                                   "model.width": 64})
    files = {fmt: sslbench.export_encoder(run_id, tmp_path / f"e-{fmt}", fmt, db=db)
             for fmt in ("safetensors", "torchscript", "torchvision")}
    encoder = sslbench.load_encoder(run_id, db=db)
    images = _batch()
    normalised = normalize(images, (0.5,), (0.19,))
    torch.save(images, tmp_path / "images.pt")
    torch.save(normalised, tmp_path / "normalised.pt")
    recipe = sslbench.load_encoder(files["torchvision"]).metadata["torchvision_recipe"]
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    subprocess.run([sys.executable, "-c", _FRESH_PROCESS, str(tmp_path / "images.pt"),
                    str(tmp_path / "normalised.pt"), str(files["safetensors"]),
                    str(files["torchscript"]), str(files["torchvision"]),
                    str(tmp_path / "recipe.json"), str(tmp_path / "out.pt")],
                   cwd=repo, check=True, timeout=300)
    got = torch.load(tmp_path / "out.pt")
    with torch.no_grad():
        expected = encoder(images)
        assert torch.equal(got["torchvision"], encoder.backbone(normalised))
    for name in ("safetensors", "torchscript", "jit"):
        assert torch.equal(got[name], expected), name
