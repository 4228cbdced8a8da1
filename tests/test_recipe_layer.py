"""The recipe layer (sslbench.config.recipes): `--recipe NAME` sits between the method's defaults
and --config/flags/overrides in `pretrain`, `bench` and `sweep`; its `recipe:` block is checked
metadata. The shipped recipes themselves are tested in tests/test_recipes.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import sslbench.config.recipes as recipes_mod
from sslbench.cli import main
from sslbench.config.recipes import read_recipe_info
from sslbench.errors import ConfigError
from sslbench.resolve import resolve_config
from sslbench.store import Store
from sslbench.sweep.space import parse_space
from sslbench.sweep.worker import baseline_params, trial_config

INFO = {"summary": "a tiny SimCLR", "source": "this test", "budget": "one epoch",
        "expected": {"linear": 50.0}, "expected_source": "nothing, a test"}
TINY = {"data": {"dataset": "synthetic"}, "model": {"width": 4},
        "optimizer": {"lr": 0.005}, "method": {"temperature": 0.3},
        "train": {"epochs": 1, "batch_size": 32}}


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A recipes folder with recipe `tiny` for simclr, in place of the shipped one."""
    root = tmp_path / "recipes"
    (root / "tiny").mkdir(parents=True)
    (root / "tiny" / "simclr.yaml").write_text(yaml.safe_dump({"recipe": INFO, **TINY}))
    monkeypatch.setattr(recipes_mod, "shipped_recipes_dir", lambda: root)
    return root


def test_a_recipe_is_a_layer_under_config_flags_and_overrides(shipped: Path,
                                                              tmp_path: Path) -> None:
    cfg = resolve_config("simclr", recipe="tiny")
    assert (cfg.data.dataset, cfg.model.width, cfg.optimizer.lr) == ("synthetic", 4, 0.005)
    assert cfg.method.temperature == 0.3
    over = tmp_path / "over.yaml"
    over.write_text("optimizer: {lr: 0.01}\n")
    cfg = resolve_config("simclr", recipe="tiny", config_file=over,
                         flags={"method.temperature": 0.2}, overrides=["model.width=8"])
    assert (cfg.optimizer.lr, cfg.method.temperature, cfg.model.width) == (0.01, 0.2, 8)
    assert cfg.data.dataset == "synthetic"  # from the recipe, untouched
    # the same file as --config: the recipe: block is metadata, dropped
    same = resolve_config("simclr", config_file=shipped / "tiny" / "simclr.yaml")
    assert same.to_dict() == resolve_config("simclr", recipe="tiny").to_dict()


def test_unknown_recipes_and_methods_without_one_are_config_errors(shipped: Path) -> None:
    with pytest.raises(ConfigError, match="unknown recipe 'nope': choose one of tiny"):
        resolve_config("simclr", recipe="nope")
    with pytest.raises(ConfigError, match="recipe 'tiny' has no byol file: it holds simclr"):
        resolve_config("byol", recipe="tiny")
    with pytest.raises(ConfigError, match="supervised baseline"):
        resolve_config(None, recipe="tiny")


@pytest.mark.parametrize(("change", "needle"), [
    ({"expected": None}, "lacks expected"),
    ({"source": ""}, "lacks source"),
    ({"expected": {"linear": 120}}, "in \\(0, 100\\]"),
    ({"expected": {"semi": 50}}, "choose a protocol"),
    ({"expected": [50]}, "must map a protocol"),
    ({"author": "me"}, "unknown key"),
])
def test_a_recipe_block_states_source_budget_and_expected(tmp_path: Path, change: dict,
                                                          needle: str) -> None:
    path = tmp_path / "simclr.yaml"
    path.write_text(yaml.safe_dump({"recipe": {**INFO, **change}, **TINY}))
    with pytest.raises(ConfigError, match=needle):
        read_recipe_info(path)
    path.write_text(yaml.safe_dump(TINY))
    with pytest.raises(ConfigError, match="has no `recipe:` block"):
        read_recipe_info(path)


def test_a_sweep_starts_every_trial_and_its_baseline_from_the_recipe(shipped: Path) -> None:
    space = parse_space({"method": "simclr", "recipe": "tiny", "fixed": {"train.epochs": 2},
                         "params": {"optimizer.lr": {"type": "float", "low": 1e-3,
                                                     "high": 1e-2}}})
    cfg = trial_config(space, {"optimizer.lr": 0.002}, ())
    assert (cfg.model.width, cfg.method.temperature, cfg.optimizer.lr) == (4, 0.3, 0.002)
    assert cfg.train.epochs == 2  # the space's own fixed keys come over the recipe
    params, _ = baseline_params(space)
    assert params == {"optimizer.lr": 0.005}  # trial 0: the recipe's value, not the method's
    with pytest.raises(ConfigError, match="recipe must name"):
        parse_space({"method": "simclr", "recipe": 3, "params": {
            "optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2}}})


def test_the_cli_takes_recipes_in_pretrain_and_sweep(shipped: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "r.sqlite")
    assert main(["pretrain", "simclr", "--recipe", "tiny", "--db", db, "--quiet",
                 "--eval", "none", "eval.knn.monitor_every=0",
                 "eval.diagnostics.enabled=false"]) == 0
    space = tmp_path / "space.yaml"  # fixes a dataset and a width: the recipe's win (not --set)
    space.write_text(yaml.safe_dump({
        "method": "simclr", "trials": 1, "pruner": {"name": "none"},
        "fixed": {"data.dataset": "fashion-mnist", "model.width": 16, "eval.knn.k": 5,
                  "eval.knn.monitor_every": 0, "eval.diagnostics.enabled": False},
        "params": {"method.temperature": {"type": "float", "low": 0.1, "high": 0.5}}}))
    assert main(["sweep", "simclr", "--space", str(space), "--recipe", "tiny", "--db", db,
                 "--quiet", "--set", "train.batch_size=16"]) == 0
    with Store.open(db, create=False) as store:
        pretrain, trial = store.get_run(1), store.list_runs(kind="trial")[0]
    assert pretrain.config["model"]["width"] == 4 and pretrain.dataset == "synthetic"
    assert trial.dataset == "synthetic" and trial.sweep_id == "simclr-synthetic"
    assert trial.config["model"]["width"] == 4 and trial.config["train"]["batch_size"] == 16
    capsys.readouterr()
    assert main(["sweep", "simclr", "--recipe", "nope", "--db", db]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown recipe 'nope'" in err and len(err.splitlines()) == 1
