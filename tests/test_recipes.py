"""The shipped recipes (recipes/NAME/METHOD.yaml): every one resolves by name to a valid config
and states its source, budget and expected top-1; `sslbench recipes` lists them; a bad name or a
recipe block without a number is a one-line error; ImageNet-100's class list is CMC's 100 classes,
and the ImageNet-100 recipe runs end to end on a fabricated image folder with those class folders
(prepared with the list, streamed, evaluated)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sslbench.cli import main
from sslbench.config import load_yaml_file
from sslbench.config.recipes import read_recipe_info, shipped_recipes
from sslbench.data.imagefolder import read_class_list
from sslbench.errors import ConfigError
from sslbench.resolve import resolve_config
from sslbench.store import Store

RECIPES = Path(__file__).parents[1] / "recipes"
SHIPPED = sorted(RECIPES.glob("*/*.yaml"))
CIFAR_METHODS = {"simclr", "byol", "mocov3", "barlow", "vicreg", "swav", "simsiam"}


@pytest.mark.parametrize("recipe", SHIPPED, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_a_shipped_recipe_resolves_and_states_its_target(recipe: Path) -> None:
    name, method = recipe.parent.name, recipe.stem
    cfg = resolve_config(method, recipe=name)
    info = read_recipe_info(recipe)
    assert (info.name, info.method) == (name, method)
    assert info.summary and info.source and info.budget and info.expected_source
    assert set(info.expected) <= {"linear", "knn"} and "linear" in info.expected
    if name.startswith("cifar"):
        assert cfg.data.dataset == name in ("cifar10", "cifar100")
        assert (cfg.model.backbone, cfg.model.stem) == ("resnet18", "cifar")
        assert (cfg.train.epochs, cfg.train.batch_size) == (1000, 256)
        assert "solo-learn" in info.source and "solo-learn README" in info.expected_source
    elif name == "fashion-mnist-15m":  # tuned here: a sweep on val, confirmed on test
        assert cfg.data.dataset == "fashion-mnist" and cfg.train.budget_s == 900
        assert cfg.eval.linear.layer == "backbone:grid3" and cfg.eval.split == "test"
        assert info.budget.startswith("15m on cpu")
        assert info.source.startswith("sslbench sweep study") and "validation split" in (
            info.source)
        assert "confirmation runs" in info.expected_source and "test split" in (
            info.expected_source)
        assert f"--recipe {name}" in recipe.read_text().splitlines()[1]
    else:
        assert name in ("imagenet100", "imagenet1k")
        assert (cfg.data.image_size, cfg.augment.crop_size) == (256, 224)
        assert cfg.optimizer.name == "lars"
        assert cfg.model.backbone == ("resnet18" if name == "imagenet100" else "resnet50")


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_the_cifar_recipes_cover_the_seven_methods(name: str) -> None:
    assert {p.stem for p in (RECIPES / name).glob("*.yaml")} == CIFAR_METHODS


@pytest.mark.parametrize("method", sorted(CIFAR_METHODS))
def test_cifar100s_recipe_is_cifar10s_on_the_other_dataset(method: str) -> None:
    ten, hundred = (load_yaml_file(RECIPES / n / f"{method}.yaml") for n in ("cifar10", "cifar100"))
    assert (ten.pop("data.dataset"), hundred.pop("data.dataset")) == ("cifar10", "cifar100")
    assert ten == hundred


def test_the_asymmetric_recipes_solarise_the_second_view_only() -> None:
    for method in ("byol", "mocov3", "barlow"):
        cfg = resolve_config(method, recipe="cifar10")
        assert (cfg.augment.view(1).solarize_prob, cfg.augment.view(2).solarize_prob) == (0.0, 0.2)
    swav = resolve_config("swav", recipe="cifar100").method
    assert (swav.queue_size, swav.queue_start_step, swav.freeze_prototypes_steps) == (3840, 9750,
                                                                                      390)


def test_config_of_a_recipe_file_is_the_recipe() -> None:
    """--config reads a recipe file too: its recipe: block is metadata, dropped."""
    path = RECIPES / "cifar10" / "byol.yaml"
    assert "recipe" not in {k.split(".")[0] for k in load_yaml_file(path)}
    by_file = resolve_config("byol", config_file=path, flags={}, overrides=[])
    assert by_file.to_dict() == resolve_config("byol", recipe="cifar10").to_dict()


def test_recipes_lists_every_shipped_file(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["recipes", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted((r["recipe"], r["method"]) for r in rows) == [(p.parent.name, p.stem)
                                                                 for p in SHIPPED]
    assert {(r["recipe"], r["method"]) for r in rows} == {(i.name, i.method)
                                                          for i in shipped_recipes()}
    byol = next(r for r in rows if (r["recipe"], r["method"]) == ("cifar10", "byol"))
    assert (byol["dataset"], byol["backbone"], byol["expected"]) == ("cifar10", "resnet18",
                                                                     {"linear": 92.58})
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["recipes"]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in ("cifar10", "cifar100", "imagenet100", "imagenet1k"))
    assert main(["recipes", "cifar100", "--method", "swav", "--json"]) == 0
    assert [(r["recipe"], r["method"]) for r in json.loads(capsys.readouterr().out)] == [
        ("cifar100", "swav")]


@pytest.mark.parametrize("argv", [["recipes", "nope"],
                                  ["pretrain", "simclr", "--recipe", "nope", "--dry-run"]])
def test_an_unknown_recipe_is_a_one_line_error(argv: list[str], workdir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown recipe 'nope'")
    assert "cifar10" in err[0]


def test_a_recipe_block_without_expected_is_refused(tmp_path: Path) -> None:
    text = (RECIPES / "cifar10" / "byol.yaml").read_text()
    lines = [line for line in text.splitlines() if not line.startswith("  expected: ")]
    path = tmp_path / "mine" / "byol.yaml"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"lacks expected$") as caught:
        read_recipe_info(path)
    assert "\n" not in str(caught.value)
    # the rest of the file is still a valid --config
    assert resolve_config("byol", config_file=path).data.dataset == "cifar10"


def test_imagenet100_is_cmcs_hundred_classes() -> None:
    classes = read_class_list(RECIPES / "imagenet100" / "classes.txt")
    assert len(classes) == 100 and len(set(classes)) == 100
    assert all(c.startswith("n") and len(c) == 9 for c in classes)
    assert classes[:3] == ["n02869837", "n01749939", "n02488291"]


@pytest.mark.slow
def test_the_imagenet100_recipe_runs_from_shards(tmp_path: Path, workdir: Path,
                                                 make_image_folder_100: Path) -> None:
    classes = RECIPES / "imagenet100" / "classes.txt"
    prepared = tmp_path / "in100"
    assert main(["data", "prepare", str(make_image_folder_100), "--size", "40", "--out",
                 str(prepared), "--class-list", str(classes), "--shard-size", "50",
                 "--workers", "0"]) == 0
    db = tmp_path / "r.sqlite"
    # the recipe as it is, shrunk to a CPU: small images, a small model, one epoch
    assert main(["pretrain", "byol", "--config", str(RECIPES / "imagenet100" / "byol.yaml"),
                 "--db", str(db), "--quiet", "--gpus", "0", f"data.prepared={prepared}",
                 "data.image_size=40", "augment.crop_size=32", "data.memory_budget_gb=0.0001",
                 "data.workers=0", "model.backbone=convnet", "model.width=8",
                 "model.projector_hidden_dim=64", "model.projector_dim=32",
                 "method.predictor_hidden_dim=64", "train.epochs=1", "train.batch_size=32",
                 "eval.linear.epochs=5"]) == 0
    with Store.open(str(db)) as store:
        run = store.get_run(1)
        assert run.status == "COMPLETED" and run.config["data"]["storage"] == "auto"
        assert [c.kind for c in store.children(1)] == ["linear"]


@pytest.fixture
def make_image_folder_100(tmp_path: Path) -> Path:
    """train/ and val/ with ImageNet-100's class folders, 2 + 1 small images each."""
    from PIL import Image

    root = tmp_path / "imagenet"
    for k, name in enumerate(read_class_list(RECIPES / "imagenet100" / "classes.txt")):
        for split, count in (("train", 2), ("val", 1)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (48, 40), (k * 2, 255 - k * 2, i * 90)).save(folder / f"{i}.jpg")
    return root
