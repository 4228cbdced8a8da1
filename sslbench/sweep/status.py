"""`sslbench sweep status` and `sslbench sweep best`: a study read back from Optuna's storage."""

from __future__ import annotations

import shlex
import statistics
from datetime import UTC, datetime
from typing import Any

import optuna
from optuna.trial import TrialState

from sslbench.errors import UserError
from sslbench.escape import for_terminal, printable
from sslbench.formatting import format_duration
from sslbench.store import Store
from sslbench.sweep.study import open_storage


def load_study(name: str, storage: str | None, store: Store) -> optuna.Study:
    optuna_storage, _ = open_storage(storage, store.url, read=True)
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
    head.add_row("study", for_terminal(str(info["study"])))
    head.add_row("method", for_terminal(f"{info['method']} (objective: {info['objective']} "
                                        "top-1 on val)"))
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
                      for_terminal(", ".join(f"{k}={_short(v)}" for k, v in t.params.items())),
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
    # the trial scored on val; its re-run reports on test (the default split)
    config = {**run.config, "eval": {**run.config.get("eval", {}), "split": "test"}}
    return (f"# best of study {printable(name)}: trial {info['best_trial']}, run {run.id}, "
            f"{info['objective']} top-1 on val {100 * info['best_value']:.2f} %\n"
            f"# re-run: {rerun_command(run.method, config)}\n"
            + yaml.safe_dump(config, sort_keys=True))


def rerun_command(method: str, config: dict[str, Any]) -> str:
    """The ``sslbench pretrain`` command that trains ``config`` again: every key that differs
    from the method's defaults on its dataset (the sweep's fixed keys and the trial's values),
    floats in full precision, each argument quoted for a POSIX shell."""
    from sslbench.config import flatten
    from sslbench.resolve import resolve_config

    values = flatten(config)
    dataset = str(values.get("data.dataset", "fashion-mnist"))
    defaults = flatten(resolve_config(method, flags={"data.dataset": dataset}).to_dict())
    args = ["sslbench", "pretrain", method, "--dataset", dataset]
    args += [f"{key}={_cli_value(value)}" for key, value in sorted(values.items())
             if key != "data.dataset" and value != defaults.get(key, _ABSENT)]
    return shlex.join(args)


_ABSENT = object()


def _cli_value(value: Any) -> str:
    """A config value as ``key=value`` takes it back: lists comma-separated, floats by repr."""
    if isinstance(value, list):
        return ",".join(_cli_value(v) for v in value)
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
