"""`sslbench sweep best STUDY --recipe-out FILE`: a study's confirmed best trial as a recipe.

A sweep chooses a configuration on the validation split and ``sweep --confirm N`` trains it again
with N fresh seeds, evaluated on the test split. The recipe file holds that configuration (every
key that differs from the method's defaults on its dataset, the machine's keys left out) and a
``recipe:`` block (:mod:`sslbench.config.recipes`) whose ``expected`` numbers are the mean test
top-1 of the confirmation runs, never the trials' validation scores: the best of many noisy
trials, chosen on the images it is scored on, is an optimistic number. A study whose best trial
has no confirmation yet has no number a recipe may promise, and is refused. Where the trial was
confirmed more than once with other settings (``--confirm-set``: say, a search at a short budget
confirmed at the full one), the latest set of confirmations is the recipe.

Put the file in ``recipes/NAME/METHOD.yaml`` to ship it (``sslbench pretrain METHOD --recipe
NAME``), or pass it as ``--config FILE`` (the ``recipe:`` block is dropped there).
"""

from __future__ import annotations

import statistics
from typing import Any

from sslbench.config.budget import BUDGET_KEYS
from sslbench.config.recipes import EXPECTED_PROTOCOLS
from sslbench.errors import UserError
from sslbench.sweep.confirm import best_trial, latest_confirmations

# where this machine keeps its data and outputs, and the seed: not part of a recipe
MACHINE_KEYS = frozenset({"data.data_dir", "train.output_dir", "train.tensorboard", "train.seed",
                          "train.gpus", "train.procs"})


def recipe_from_study(store: Any, study: str, name: str | None = None) -> str:
    """The recipe YAML of ``study``'s best trial, its expected numbers from its confirmations;
    ``name``: the recipe it ships as (``recipes/NAME/METHOD.yaml``), for its header's command."""
    import yaml

    from sslbench.config import apply_dotted, flatten
    from sslbench.config.budget import budget_label
    from sslbench.resolve import resolve_config

    best = best_trial(store, study)
    confirmations = latest_confirmations(store, study, best.trial_number)
    if not confirmations:
        raise UserError(f"study {study!r}: its best trial ({best.trial_number}) has not been "
                        f"confirmed on the test split; run `sslbench sweep {best.method} --study "
                        f"{study} --confirm 3` first (a recipe's expected numbers come from seeds "
                        "the search never saw)")
    scores = _test_scores(store, confirmations)
    if not scores:
        raise UserError(f"study {study!r}: no confirmation run of trial {best.trial_number} has a "
                        "completed linear or kNN evaluation on the test split")
    values = flatten(confirmations[0].config)
    dataset = str(values.get("data.dataset"))
    defaults = flatten(resolve_config(best.method, flags={"data.dataset": dataset}).to_dict())
    budgeted = any(values.get(f"train.{key}") is not None for key in BUDGET_KEYS)
    keys = {key: value for key, value in sorted(values.items())
            if key not in MACHINE_KEYS and not (budgeted and key == "train.epochs")
            and (key == "data.dataset" or value != defaults.get(key, _ABSENT))}
    budget = budget_label(confirmations[0].config.get("train", {})) + _hardware(confirmations)
    batch = values.get("train.batch_size")
    seeds = ", ".join(str(r.seed) for r in confirmations)
    ids = ", ".join(str(r.id) for r in confirmations)
    n_trials = sum(1 for r in store.list_runs(kind="trial", status="COMPLETED")
                   if r.sweep_id == study)
    objective = f"{100 * best.summary['objective']:.2f} %"
    block = {
        "summary": f"{best.method} on {dataset}, tuned by the sslbench sweep {study}",
        "source": (f"sslbench sweep study {study}: trial {best.trial_number} (run {best.id}, "
                   f"objective {objective} on the validation split) of {n_trials} completed "
                   "trials, "
                   f"{_database(store.url)}"),
        "budget": f"{budget} at batch {batch}" if batch else budget,
        "expected": {p: round(statistics.fmean(v), 2) for p, v in scores.items()},
        "expected_source": (
            "mean top-1 on the test split of the confirmation runs "
            f"{ids} (seeds {seeds}; " + "; ".join(
                f"{p}: {', '.join(f'{x:.2f}' for x in v)}" for p, v in scores.items()) + ")"),
    }
    run = (f"sslbench pretrain {best.method} --recipe {name}" if name else
           f"sslbench pretrain {best.method} --config THIS_FILE   (or --recipe NAME from "
           f"recipes/NAME/{best.method}.yaml)")
    head = (f"# {best.method} as the sslbench sweep {study} chose it on the validation split of "
            f"{dataset}\n#   {run}\n")
    return head + yaml.safe_dump({"recipe": block, **apply_dotted({}, keys)}, sort_keys=False,
                                 allow_unicode=True, width=100)


_ABSENT = object()


def _hardware(runs: list[Any]) -> str:
    """Where a wall-clock budget was spent, which decides what it buys: `` on cpu (2 threads)``
    when every confirmation ran on one kind of device (and thread count, on the CPU); nothing for
    a budget in steps, FLOPs or epochs, which is the same work on any machine."""
    if any(r.config.get("train", {}).get("budget_s") is None for r in runs):
        return ""
    devices = {r.device for r in runs}
    if len(devices) != 1 or None in devices:
        return ""
    threads = {r.summary.get("cpu_threads") for r in runs}
    device = devices.pop()
    if len(threads) == 1 and (n := threads.pop()) is not None:
        return f" on {device} ({int(n)} threads)"
    return f" on {device}"


def _database(url: str) -> str:
    """The results database as a recipe names it: a SQLite file's name (not this machine's
    path), a server's URL without its password."""
    from sslbench.store.db import display_name, sqlite_path

    path = sqlite_path(url)
    return path.name if path else display_name(url)


def _test_scores(store: Any, runs: list[Any]) -> dict[str, list[float]]:
    """Top-1 % per protocol of each run's completed evaluation on the test split, for the
    protocols every run has."""
    per_run: list[dict[str, float]] = []
    for run in runs:
        got: dict[str, float] = {}
        for child in store.children(run.id):
            key = f"{child.kind}_top1"
            if (child.kind in EXPECTED_PROTOCOLS and child.status == "COMPLETED"
                    and child.config.get("split") == "test" and key in child.summary):
                got[child.kind] = 100 * float(child.summary[key])
        per_run.append(got)
    return {p: [got[p] for got in per_run] for p in EXPECTED_PROTOCOLS
            if all(p in got for got in per_run)}
