"""Nothing that chooses reads the test split: a sweep whose test labels are shuffled takes exactly
the same decisions (sampled parameters, pruned trials, objective values, best trial), while one
whose validation labels are shuffled takes others; `sweep --confirm` reports on the test split."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml

import sslbench.data.splits as splits
import sslbench.run.pretrain as run_pretrain
from sslbench.cli import main
from sslbench.config import flatten
from sslbench.config.recipes import read_recipe_info
from sslbench.data import ImageDataset, load_dataset
from sslbench.resolve import resolve_config
from sslbench.store import Store
from sslbench.sweep.study import open_storage

SPACE = {
    "method": "simclr",
    "objective": "knn",
    "trials": 5,
    "fixed": {"data.dataset": "synthetic", "data.val_fraction": 0.25, "train.epochs": 2,
              "train.batch_size": 32, "model.width": 4, "eval.knn.k": 10,
              "eval.diagnostics.enabled": False},
    "pruner": {"name": "median", "startup_trials": 1, "warmup_epochs": 0},
    "params": {
        "optimizer.lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
        "method.temperature": {"type": "float", "low": 0.05, "high": 0.5},
    },
}


def _dataset() -> ImageDataset:
    """256 synthetic training images (8 steps of 32 an epoch) and 128 test images."""
    full = load_dataset("synthetic", None, seed=0)
    return dataclasses.replace(full, train_images=full.train_images[:256],
                               train_labels=full.train_labels[:256],
                               test_images=full.test_images[:128],
                               test_labels=full.test_labels[:128])


def _shuffled(labels: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """``labels`` with the entries at ``where`` randomly permuted among themselves."""
    out = labels.clone()
    order = torch.randperm(where.shape[0], generator=torch.Generator().manual_seed(7))
    out[where] = labels[where][order]
    return out


def _sweep(folder: Path, dataset: ImageDataset, split: splits.ValidationSplit,
           monkeypatch: pytest.MonkeyPatch, *extra: str) -> str:
    """Run the space on ``dataset`` in ``folder``, with the validation split fixed to ``split``
    (so shuffling labels permutes them and does not redraw the stratified split); the DB."""
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setattr(run_pretrain, "load_run_dataset", lambda *args, **kwargs: dataset)
    monkeypatch.setattr(splits, "validation_split", lambda *args, **kwargs: split)
    space = folder / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    db = str(folder / "r.sqlite")
    assert main(["sweep", "simclr", "--space", str(space), "--db", db, "--quiet", *extra]) == 0
    return db


def _decisions(db: str) -> dict[str, Any]:
    with Store.open(db, create=False) as store:
        storage, _ = open_storage(None, store.url)
    study = optuna.load_study(study_name="simclr-synthetic", storage=storage)
    trials = sorted(study.get_trials(), key=lambda t: t.number)
    return {"params": [t.params for t in trials], "states": [t.state.name for t in trials],
            "reported": [t.intermediate_values for t in trials],
            "values": [t.value for t in trials], "best": study.best_trial.number}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Any]:
    data = _dataset()
    split = splits.validation_split(data.train_labels, 10, 0.25, "synthetic", 0)
    with pytest.MonkeyPatch.context() as monkeypatch:
        db = _sweep(tmp_path_factory.mktemp("sweeps") / "reference", data, split, monkeypatch)
    return _decisions(db), split


@pytest.mark.slow
def test_shuffled_test_labels_change_no_decision(reference: tuple[dict[str, Any], Any],
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    expected, split = reference
    assert "PRUNED" in expected["states"] and "COMPLETE" in expected["states"]  # both kinds
    data = _dataset()
    shuffled = dataclasses.replace(data, test_labels=_shuffled(
        data.test_labels, torch.arange(data.test_labels.shape[0])))
    assert not torch.equal(shuffled.test_labels, data.test_labels)
    db = _sweep(tmp_path / "test-shuffled", shuffled, split, monkeypatch)
    assert _decisions(db) == expected  # the same values to the last bit, so the same choices


@pytest.mark.slow
def test_shuffled_validation_labels_change_the_decisions(
        reference: tuple[dict[str, Any], Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    expected, split = reference
    data = _dataset()
    shuffled = dataclasses.replace(data, train_labels=_shuffled(data.train_labels, split.val))
    db = _sweep(tmp_path / "val-shuffled", shuffled, split, monkeypatch)
    got = _decisions(db)
    assert got["values"] != expected["values"] and got["reported"] != expected["reported"]
    assert (got["params"], got["states"], got["best"]) != (
        expected["params"], expected["states"], expected["best"])


@pytest.mark.slow
def test_confirm_reruns_the_best_trial_with_fresh_seeds_on_test(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    data = _dataset()
    split = splits.validation_split(data.train_labels, 10, 0.25, "synthetic", 0)
    db = _sweep(tmp_path / "confirm", data, split, monkeypatch, "--trials", "2", "--confirm", "2")
    out = capsys.readouterr().out
    assert "confirmed on the test split" in out and "(n=2)" in out
    with Store.open(db, create=False) as store:
        trials = {r.trial_number: r for r in store.list_runs(kind="trial")}
        best = max((r for r in trials.values() if "objective" in r.summary),
                   key=lambda r: r.summary["objective"])
        confirmations = store.list_runs(kind="pretrain")
        assert sorted(r.seed for r in confirmations) == [1, 2]  # seeds the search never saw
        for run in confirmations:
            assert (run.sweep_id, run.trial_number, run.parent_id) == (
                "simclr-synthetic", best.trial_number, best.id)
            assert run.config["optimizer"] == best.config["optimizer"]
            children = store.children(run.id)
            assert sorted(c.kind for c in children) == ["knn", "linear"]
            assert all(c.config["split"] == "test" for c in children)
        for trial in trials.values():  # the trials never looked at the test split
            evaluations = [c for c in store.children(trial.id) if c.kind != "pretrain"]
            assert all(c.config["split"] == "val" for c in evaluations)
    # again: nothing new to run; the sweep report shows the confirmation under the trials
    assert main(["sweep", "simclr", "--space", str(tmp_path / "confirm" / "space.yaml"),
                 "--db", db, "--quiet", "--trials", "2", "--confirm", "2"]) == 0
    assert main(["report", "--db", db, "--sweep", "simclr-synthetic", "-f", "markdown"]) == 0
    report = capsys.readouterr().out
    assert "on the test split (sweep --confirm)" in report
    assert f"simclr (sweep simclr-synthetic, trial {best.trial_number})" in report
    with Store.open(db, create=False) as store:
        assert len(store.list_runs(kind="pretrain")) == 2

    # the confirmed best trial as a recipe: its config, the confirmations' mean test top-1
    (tmp_path / "recipes" / "tuned").mkdir(parents=True)
    recipe = tmp_path / "recipes" / "tuned" / "simclr.yaml"
    assert main(["sweep", "best", "simclr-synthetic", "--db", db, "--recipe-out",
                 str(recipe)]) == 0
    info = read_recipe_info(recipe)
    with Store.open(db, create=False) as store:
        tests = {kind: [100 * c.summary[f"{kind}_top1"] for r in confirmations
                        for c in store.children(r.id) if c.kind == kind] for kind in ("linear",
                                                                                       "knn")}
    assert info.expected == {k: pytest.approx(round(sum(v) / 2, 2)) for k, v in tests.items()}
    assert f"trial {best.trial_number} (run {best.id}" in info.source
    assert info.source.endswith("r.sqlite") and str(tmp_path) not in recipe.read_text()
    completed = sum(r.status == "COMPLETED" for r in trials.values())  # a pruned one is not
    assert f"of {completed} completed trials" in info.source
    assert "#   sslbench pretrain simclr --recipe tuned\n" in recipe.read_text()
    again = flatten(resolve_config("simclr", config_file=recipe, overrides=[
        f"train.seed={confirmations[0].seed}"]).to_dict())
    assert again == flatten(confirmations[0].config)  # the recipe trains the confirmed config
    assert main(["sweep", "best", "simclr-synthetic", "--db", db, "--recipe-out",
                 str(recipe)]) == 2  # never overwritten

    # confirmed again at another budget: a set of runs of its own, and the recipe follows it
    assert main(["sweep", "simclr", "--space", str(tmp_path / "confirm" / "space.yaml"),
                 "--db", db, "--quiet", "--trials", "2", "--confirm", "2",
                 "--confirm-set", "train.budget_steps=3"]) == 0
    with Store.open(db, create=False) as store:
        longer = [r for r in store.list_runs(kind="pretrain") if r.id not in
                  {c.id for c in confirmations}]
    assert sorted(r.seed for r in longer) == [1, 2]
    assert all(r.summary["steps"] == 3 and r.config["train"]["epochs"] == 2 for r in longer)
    assert all(r.trial_number == best.trial_number for r in longer)
    capsys.readouterr()
    assert main(["report", "--db", db, "-f", "json"]) == 0
    budgets = {(r["sweep"], r["budget"]) for r in json.loads(capsys.readouterr().out)["rows"]}
    row = f"simclr-synthetic, trial {best.trial_number}"
    assert budgets == {(row, "3 steps"), (row, "2 epochs")}
    assert main(["sweep", "best", "simclr-synthetic", "--db", db, "--recipe-out",
                 str(tmp_path / "short.yaml")]) == 0
    short = read_recipe_info(tmp_path / "short.yaml")  # not in a recipes folder: --config
    assert "--config THIS_FILE" in (tmp_path / "short.yaml").read_text()
    assert short.budget == "3 steps at batch 32" and short.keys["train.budget_steps"] == 3
    assert f"runs {', '.join(str(r.id) for r in sorted(longer, key=lambda r: r.seed))} " in (
        short.expected_source)


def test_a_wall_clock_recipe_says_where_its_minutes_were_spent() -> None:
    from types import SimpleNamespace

    from sslbench.sweep.recipe import _hardware

    def run(device: str | None, threads: int | None, budget_s: float | None = 900.0) -> Any:
        summary = {} if threads is None else {"cpu_threads": threads}
        return SimpleNamespace(device=device, summary=summary,
                               config={"train": {"budget_s": budget_s}})

    assert _hardware([run("cpu", 2), run("cpu", 2)]) == " on cpu (2 threads)"
    assert _hardware([run("cpu", 2), run("cpu", 4)]) == " on cpu"  # threads differ
    assert _hardware([run("cuda:0", None)]) == " on cuda:0"
    assert _hardware([run("cpu", 2), run("cuda:0", None)]) == ""  # devices differ
    assert _hardware([run("cpu", 2, budget_s=None)]) == ""  # steps or FLOPs: any machine
