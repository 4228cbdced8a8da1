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
                 show_progress: bool = False) -> list[int]:
    """Pretrain the best trial's config with ``confirmations`` fresh seeds (those not run yet),
    each evaluated on the test split; the ids of every confirmation run of that trial."""
    from sslbench.config import apply_dotted
    from sslbench.resolve import config_from_dict
    from sslbench.run.pretrain import RunHooks, run_pretrain
    from sslbench.store import Store

    with Store.open(db, create=False) as store:
        best = best_trial(store, study)
        done = {r.seed: r.id for r in confirmation_runs(store, study, best.trial_number)}
    seeds = [best.seed + i for i in range(1, confirmations + 1)]
    echo(f"study {study}: confirming trial {best.trial_number} (run {best.id}, objective "
         f"{100 * best.summary['objective']:.2f} % on val) with seeds "
         f"{', '.join(map(str, seeds))} on the test split")
    hooks = RunHooks(kind="pretrain", parent_id=best.id, sweep_id=study,
                     trial_number=best.trial_number)
    for seed in seeds:
        if seed in done:
            continue
        cfg = config_from_dict(apply_dotted(best.config, {
            "train.seed": seed, "eval.split": "test", "eval.protocols": list(PROTOCOLS)}))
        run_id = run_pretrain(cfg, db, echo=echo, show_progress=show_progress, hooks=hooks)
        assert run_id is not None  # a confirmation runs in one process and records itself
        done[seed] = run_id
    return [done[s] for s in seeds]


def confirmation_runs(store: Any, study: str, trial_number: int | None) -> list[Any]:
    """The completed confirmation runs of trial ``trial_number`` of ``study``."""
    return [r for r in store.list_runs(kind="pretrain", status="COMPLETED")
            if r.sweep_id == study and r.trial_number == trial_number]
