"""`sslbench sweep status` and `sslbench sweep best`: a study read back from Optuna's storage."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from typing import Any

import optuna
from optuna.trial import TrialState

from sslbench.errors import UserError
from sslbench.formatting import format_duration
from sslbench.store import Store
from sslbench.sweep.study import open_storage


def load_study(name: str, storage: str | None, store: Store) -> optuna.Study:
    optuna_storage, _ = open_storage(storage, store.url)
    try:
        return optuna.load_study(study_name=name, storage=optuna_storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(optuna_storage)]
        known = ", ".join(names) if names else "none yet"
        raise UserError(f"no study {name!r} in this storage (studies: {known})") from None


def summary(study: optuna.Study) -> dict[str, Any]:
    """Trials by state, best value and params, and an ETA from the finished trials' durations."""
    trials = study.get_trials(deepcopy=False)
    by_state = {s.name: 0 for s in TrialState}
    for t in trials:
        by_state[t.state.name] += 1
    budget = int(study.user_attrs.get("trials", len(trials)))
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    durations = [t.duration.total_seconds() for t in finished if t.duration is not None]
    remaining = max(0, budget - len(finished) - by_state["RUNNING"])
    running = max(1, by_state["RUNNING"])
    eta = (statistics.fmean(durations) * (remaining + by_state["RUNNING"]) / running
           if durations and (remaining or by_state["RUNNING"]) else None)
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(completed, key=lambda t: t.value or 0.0) if completed else None
    return {"study": study.study_name, "method": study.user_attrs.get("method"),
            "objective": study.user_attrs.get("objective"), "budget": budget,
            "states": by_state, "best_value": best.value if best else None,
            "best_params": best.params if best else {}, "best_trial": best.number if best else None,
            "best_run": best.user_attrs.get("run_id") if best else None, "eta_s": eta,
            "trials": trials}


def status_table(name: str, storage: str | None, store: Store) -> Any:
    from rich.console import Group
    from rich.table import Table

    info = summary(load_study(name, storage, store))
    head = Table(show_header=False, box=None)
    head.add_row("study", str(info["study"]))
    head.add_row("method", f"{info['method']} (objective: {info['objective']} top-1 on val)")
    states = ", ".join(f"{k.lower()} {v}" for k, v in info["states"].items() if v)
    head.add_row("trials", f"{states or 'none'} (budget {info['budget']})")
    if info["best_value"] is not None:
        head.add_row("best", f"{100 * info['best_value']:.2f} % (trial {info['best_trial']}, "
                             f"run {info['best_run']})")
    eta = info["eta_s"]
    head.add_row("eta", "done" if eta is None else f"{eta / 60:.1f} min")
    table = Table(title="trials", header_style="bold")
    for col in ("trial", "state", "value", "run", "params", "duration"):
        table.add_column(col, justify="right" if col in ("trial", "value", "run") else "left")
    for t in info["trials"]:
        duration = t.duration.total_seconds() if t.duration is not None else (
            (datetime.now(UTC) - t.datetime_start.astimezone(UTC)).total_seconds()
            if t.datetime_start is not None else None)
        table.add_row(f"{t.number} (defaults)" if t.user_attrs.get("baseline") else str(t.number),
                      t.state.name,
                      "-" if t.value is None else f"{100 * t.value:.2f}",
                      str(t.user_attrs.get("run_id", "-")),
                      ", ".join(f"{k}={_short(v)}" for k, v in t.params.items()),
                      format_duration(duration))
    return Group(head, table)


def best_command(name: str, storage: str | None, store: Store) -> str:
    """The best trial's config and the command that re-runs it (reporting on the test split,
    as ``sweep --confirm`` does)."""
    info = summary(load_study(name, storage, store))
    if info["best_trial"] is None:
        raise UserError(f"study {name!r} has no completed trial yet "
                        f"(see `sslbench sweep status {name}`)")
    import yaml

    run = store.get_run(int(info["best_run"]))
    params = " ".join(f"{k}={_short(v)}" for k, v in info["best_params"].items())
    fixed = store_fixed(run.config)
    config = {**run.config, "eval": {**run.config.get("eval", {}), "split": "test"}}
    return (f"# best of study {name}: trial {info['best_trial']}, run {run.id}, "
            f"{info['objective']} top-1 on val {100 * info['best_value']:.2f} %\n"
            f"# re-run: sslbench pretrain {info['method']} {fixed}{params}\n"
            + yaml.safe_dump(config, sort_keys=True))


def store_fixed(config: dict[str, Any]) -> str:
    train = config.get("train", {})
    data = config.get("data", {})
    return (f"--dataset {data.get('dataset', 'fashion-mnist')} "
            f"--epochs {train.get('epochs')} ")


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
