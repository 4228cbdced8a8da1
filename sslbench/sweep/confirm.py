"""`sslbench sweep METHOD --confirm N`: the best trial re-run with N fresh seeds, on the test split.

A sweep chooses on the validation split; its best objective is an optimistic number (the winner of
many noisy draws, on the images it was chosen on). The number to report is the chosen
configuration trained again with seeds the search never saw (the best trial's seed + 1 … + N) and
evaluated once on the test split, with ``linear`` and ``knn``. Each confirmation is a pretrain run
with the study's ``sweep_id``, the confirmed trial's number and its run as parent, so the
leaderboard shows the confirmations as one row (``byol (sweep byol-fm, trial 7)``) with its mean
and interval, and ``report --sweep`` shows them under the trials. Running the command again only
adds the seeds still missing.
"""

from __future__ import annotations

import contextlib
from typing import Any

from sslbench.errors import UserError

PROTOCOLS = ("linear", "knn")


def best_trial(store: Any, study: str) -> Any:
    """The study's completed trial with the highest objective on the validation split (the lowest
    trial number among equals)."""
    trials = [r for r in store.list_runs(kind="trial")
              if r.sweep_id == study and r.status == "COMPLETED" and "objective" in r.summary
              and r.config.get("eval", {}).get("split") == "val"]
    if not trials:
        raise UserError(f"study {study!r} has no completed trial with an objective on the "
                        "validation split to confirm")
    return max(trials, key=lambda r: (r.summary["objective"], -(r.trial_number or 0)))


def confirm_best(study: str, db: str | None, confirmations: int, *, echo: Any = print,
                 show_progress: bool = False, overrides: dict[str, Any] | None = None
                 ) -> list[int]:
    """Pretrain the best trial's config with ``confirmations`` fresh seeds (those not run yet),
    each evaluated on the test split; the ids of every confirmation run of that trial.

    ``overrides`` (dotted keys) change the confirmations' config only, e.g. a longer budget to
    confirm a search made at a short one; a budget key among them replaces the trial's budget.
    Confirmations with other overrides are other runs: each set keeps its own seeds."""
    from sslbench.config import apply_dotted
    from sslbench.resolve import config_from_dict
    from sslbench.run.pretrain import RunHooks, run_pretrain
    from sslbench.store import Store

    changes = confirmation_changes(overrides or {})
    with Store.open(db, create=False) as store:
        best = best_trial(store, study)
        seeds = [best.seed + i for i in range(1, confirmations + 1)]

        def config_for(seed: int) -> Any:
            return config_from_dict(apply_dotted(best.config, {
                **changes, "train.seed": seed, "eval.split": "test",
                "eval.protocols": list(PROTOCOLS)}))

        target = _without_seed(config_for(seeds[0]).to_dict())  # bad overrides: nothing ran
        done = {r.seed: r.id for r in confirmation_runs(store, study, best.trial_number)
                if _without_seed(r.config) == target}
    echo(f"study {study}: confirming trial {best.trial_number} (run {best.id}, objective "
         f"{100 * best.summary['objective']:.2f} % on val) with seeds "
         f"{', '.join(map(str, seeds))} on the test split"
         + (f", with {', '.join(f'{k}={v}' for k, v in (overrides or {}).items())}"
            if overrides else ""))
    hooks = RunHooks(kind="pretrain", parent_id=best.id, sweep_id=study,
                     trial_number=best.trial_number)
    for seed in seeds:
        if seed in done:
            continue
        run_id = run_pretrain(config_for(seed), db, echo=echo, show_progress=show_progress,
                              hooks=hooks)
        assert run_id is not None  # a confirmation runs in one process and records itself
        done[seed] = run_id
    return [done[s] for s in seeds]


def confirmation_changes(overrides: dict[str, Any]) -> dict[str, Any]:
    """The dotted keys ``--confirm-set`` changes: a budget key among them clears the others
    (a trial's FLOP budget gives way to a confirmation's wall-clock one)."""
    from sslbench.config.budget import BUDGET_KEYS

    if any(f"train.{key}" in overrides for key in BUDGET_KEYS):
        return {**{f"train.{key}": None for key in BUDGET_KEYS}, **overrides}
    return dict(overrides)


def confirmation_runs(store: Any, study: str, trial_number: int | None) -> list[Any]:
    """The completed confirmation runs of trial ``trial_number`` of ``study``."""
    return [r for r in store.list_runs(kind="pretrain", status="COMPLETED")
            if r.sweep_id == study and r.trial_number == trial_number]


def latest_confirmations(store: Any, study: str, trial_number: int | None) -> list[Any]:
    """The completed confirmation runs of the trial made with the same config as its latest one
    (confirmations at another budget, say, are another set), by seed."""
    runs = confirmation_runs(store, study, trial_number)
    if not runs:
        return []
    latest = _without_seed(max(runs, key=lambda r: r.id).config)
    return sorted((r for r in runs if _without_seed(r.config) == latest), key=lambda r: r.seed)


def _without_seed(config: dict[str, Any]) -> str:
    """A stored config's identity apart from its seed (canonical JSON), rebuilt first so that a
    run recorded before a key existed compares by that key's default."""
    from sslbench.canonical import canonical_json
    from sslbench.config import apply_dotted
    from sslbench.errors import ConfigError
    from sslbench.resolve import config_from_dict

    # no longer a valid config: compared as stored (it matches nothing new)
    with contextlib.suppress(ConfigError):
        config = config_from_dict(config).to_dict()
    return canonical_json(apply_dotted(config, {"train.seed": None}))
