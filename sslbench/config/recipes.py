"""Named recipes: a config file per method and dataset, shipped with the package.

A recipe is ``recipes/NAME/METHOD.yaml`` in a source checkout (``sslbench/recipes/`` in a wheel),
like solo-learn's per-dataset scripts: ``sslbench pretrain byol --recipe cifar10`` resolves
``recipes/cifar10/byol.yaml`` as a config layer between the method's defaults and ``--config``
(see :mod:`sslbench.resolve`). Besides config keys, a recipe holds a ``recipe:`` block of
metadata that says where its settings come from and what it should reach::

    recipe:
      summary: BYOL on CIFAR-10, ResNet-18 with the CIFAR stem
      source: https://github.com/vturrisi/solo-learn/blob/main/scripts/pretrain/cifar/byol.yaml
      budget: 1000 epochs at batch 256 (195 steps each), one GPU
      expected: {linear: 92.6}   # top-1 % on the test split, per protocol
      expected_source: solo-learn's README, CIFAR-10 table (offline linear top-1)

The block is metadata, not config: ``load_yaml_file`` drops it, so ``--config`` reads a recipe
too. Torch-free, like the rest of :mod:`sslbench.config`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sslbench.config.parse import flatten, read_yaml
from sslbench.config.schema import RECIPE_KEY
from sslbench.errors import ConfigError

EXPECTED_PROTOCOLS = ("linear", "knn")
_TEXT_FIELDS = ("summary", "source", "budget", "expected_source")


@dataclass(frozen=True)
class RecipeInfo:
    """The ``recipe:`` block of a recipe file, checked."""

    name: str  # the folder: cifar10, imagenet100, fashion-mnist-15m ...
    method: str  # the file's stem
    path: Path
    summary: str
    source: str  # where the settings come from (the authors' or solo-learn's config, a sweep)
    budget: str  # what the recipe spends, in words (epochs, minutes, hardware)
    expected: dict[str, float]  # top-1 % on the test split per protocol (linear, knn)
    expected_source: str  # where that number comes from (a paper's table, a measured run)
    keys: dict[str, Any]  # the recipe's config keys, dotted (what the layer sets)


def shipped_recipes_dir() -> Path:
    """The folder of the shipped recipes: ``sslbench/recipes`` in an installed wheel, the
    repository's ``recipes/`` in a source checkout (an editable install)."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "recipes"
    return installed if installed.is_dir() else package.parent / "recipes"


def recipe_path(name: str, method: str) -> Path:
    """The file of recipe ``name`` for ``method``; a ConfigError naming what exists otherwise."""
    root = shipped_recipes_dir()
    names = recipe_names()
    if name not in names:
        raise ConfigError(f"unknown recipe {name!r}: choose one of {', '.join(names)} "
                          "(`sslbench recipes` lists them)")
    path = root / name / f"{method}.yaml"
    if not path.is_file():
        have = sorted(p.stem for p in (root / name).glob("*.yaml"))
        raise ConfigError(f"recipe {name!r} has no {method} file: it holds {', '.join(have)} "
                          "(`sslbench recipes` lists every recipe)")
    return path


def recipe_names() -> list[str]:
    """The shipped recipes: the folders of the recipes folder that hold a YAML file."""
    root = shipped_recipes_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.yaml")))


def shipped_recipes() -> list[RecipeInfo]:
    """Every shipped recipe file, read and checked, by name then method."""
    root = shipped_recipes_dir()
    return [read_recipe_info(path) for name in recipe_names()
            for path in sorted((root / name).glob("*.yaml"))]


def read_recipe_info(path: Path) -> RecipeInfo:
    """The checked ``recipe:`` block of ``path``; a ConfigError says what is missing or wrong."""
    data = read_yaml(path, "recipe")
    block = data.get(RECIPE_KEY) if isinstance(data, dict) else None
    where = f"recipe {str(path)!r}"
    if not isinstance(block, dict):
        raise ConfigError(f"{where} has no `{RECIPE_KEY}:` block; give summary, source, budget, "
                          "expected and expected_source")
    missing = [k for k in (*_TEXT_FIELDS, "expected")
               if k not in block or block[k] in (None, "", {})]
    if missing:
        raise ConfigError(f"{where}: the `{RECIPE_KEY}:` block lacks {', '.join(missing)}")
    unknown = sorted(set(block) - {*_TEXT_FIELDS, "expected"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} in the `{RECIPE_KEY}:` "
                          f"block; it holds {', '.join((*_TEXT_FIELDS, 'expected'))}")
    keys = flatten({k: v for k, v in data.items() if k != RECIPE_KEY})
    return RecipeInfo(name=path.parent.name, method=path.stem, path=path,
                      expected=_expected(block["expected"], where), keys=keys,
                      **{k: str(block[k]).strip() for k in _TEXT_FIELDS})


def _expected(raw: Any, where: str) -> dict[str, float]:
    if not isinstance(raw, dict):
        protocols = ", ".join(EXPECTED_PROTOCOLS)
        raise ConfigError(f"{where}: expected must map a protocol ({protocols}) to a top-1 %, "
                          "e.g. {linear: 92.6}")
    out: dict[str, float] = {}
    for protocol, value in raw.items():
        if protocol not in EXPECTED_PROTOCOLS:
            raise ConfigError(f"{where}: expected.{protocol}: choose a protocol among "
                              f"{', '.join(EXPECTED_PROTOCOLS)}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                math.isfinite(value) and 0 < value <= 100):
            raise ConfigError(f"{where}: expected.{protocol}={value!r}: give a top-1 % in (0, 100]")
        out[str(protocol)] = float(value)
    return out
