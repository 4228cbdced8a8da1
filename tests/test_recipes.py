"""The ImageNet recipes (recipes/): every one resolves to a valid config, ImageNet-100's class
list is CMC's 100 classes, and the ImageNet-100 recipe runs end to end on a fabricated image
folder with those class folders (prepared with the list, streamed, evaluated)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sslbench.cli import main
from sslbench.data.imagefolder import read_class_list
from sslbench.resolve import resolve_config
from sslbench.store import Store

RECIPES = Path(__file__).parents[1] / "recipes"


@pytest.mark.parametrize("recipe", sorted(RECIPES.glob("*/*.yaml")), ids=lambda p: p.stem
                         + "-" + p.parent.name)
def test_a_recipe_resolves(recipe: Path) -> None:
    cfg = resolve_config(recipe.stem, config_file=recipe, flags={}, overrides=[])
    assert (cfg.data.image_size, cfg.augment.crop_size, cfg.optimizer.name) == (256, 224, "lars")
    assert cfg.model.backbone == ("resnet18" if recipe.parent.name == "imagenet100"
                                  else "resnet50")


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
