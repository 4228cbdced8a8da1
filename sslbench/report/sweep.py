"""The report of one sweep: its trials ranked by objective, and which parameters mattered.

Read from sslbench's store alone (no Optuna storage needed, so it works on a copied results DB):
the searched parameters are the config keys whose values differ between the sweep's trials, the
objective is each trial's recorded ``objective`` (its final kNN or linear top-1 on the validation
split). Trials are ranked by it and by nothing else: a trial whose objective was measured on the
test split (recorded before sslbench had a validation split) is listed but never ranked. Parameter
importance is fANOVA (Hutter et al., "An Efficient Approach for Assessing Hyperparameter
Importance", ICML 2014) through Optuna, on an in-memory study rebuilt from the completed trials:
the share of the objective's variance (under a random-forest fit) explained by each parameter.
With a dozen trials it is a rough guide; the objective-vs-parameter plot shows the evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sslbench.config import flatten
from sslbench.errors import UserError
from sslbench.escape import for_markdown
from sslbench.report.table import Filters, Leaderboard, ReportRun, build_leaderboard, load_runs
from sslbench.store import Store

# Keys that differ between trials without being searched.
_NOT_PARAMS = ("train.output_dir",)
_STATUS_ORDER = {"COMPLETED": 0, "PRUNED": 1, "RUNNING": 2, "FAILED": 3, "KILLED": 4}


@dataclass
class TrialRow:
    number: int | None
    run_id: int
    status: str
    objective: float | None
    objective_split: str  # val; test for a trial recorded before the validation split existed
    last_knn: float | None  # online kNN top-1 on val of the last epoch (pruned trials too)
    epochs: int
    duration_s: float | None
    params: dict[str, Any]

    @property
    def ranked(self) -> bool:
        """Whether this trial takes part in the ranking: a completed objective on val."""
        return self.objective is not None and self.objective_split == "val"


@dataclass
class SweepReport:
    study: str
    method: str
    dataset: str
    params: list[str]
    trials: list[TrialRow]  # completed best first, then pruned, running, failed
    importance: dict[str, float] = field(default_factory=dict)  # param → share, sums to 1
    log_scale: dict[str, bool] = field(default_factory=dict)
    confirmed: Leaderboard | None = None  # `sweep --confirm`: the best trial on the test split

    @property
    def best(self) -> TrialRow | None:
        done = [t for t in self.trials if t.ranked]
        return done[0] if done else None


def build_sweep_report(store: Store, study: str) -> SweepReport:
    """The trials of ``study`` (any status) ranked, with parameter importance."""
    runs = load_runs(store, Filters(sweep=study, status=None, kinds=("trial",)))
    if not runs:
        names = sorted({r.sweep_id for r in store.list_runs(kind="trial") if r.sweep_id})
        known = ", ".join(names) if names else "none in this DB"
        raise UserError(f"--sweep {study!r}: no trials of that study (studies: {known})")
    flat = {r.id: flatten(r.config) for r in runs}
    keys = sorted({k for f in flat.values() for k in f})
    params = [k for k in keys if k not in _NOT_PARAMS
              and len({repr(f.get(k)) for f in flat.values()}) > 1]
    last_knn, epochs = _last_epoch_knn(store, [r.id for r in runs])
    trials = [TrialRow(r.trial_number, r.id, r.status, _objective(r),
                       str(flat[r.id].get("eval.split", "test")), last_knn.get(r.id),
                       epochs.get(r.id, 0), r.duration_s, {k: flat[r.id].get(k) for k in params})
              for r in runs]
    trials.sort(key=lambda t: (_STATUS_ORDER.get(t.status, 9), not t.ranked,
                               -(t.objective if t.objective is not None else -math.inf),
                               t.number if t.number is not None else -1))
    report = SweepReport(study, runs[0].method, runs[0].dataset, params, trials)
    report.log_scale = {k: _looks_log([t.params[k] for t in trials]) for k in params}
    report.importance = param_importance(report)
    confirmations = load_runs(store, Filters(sweep=study, kinds=("pretrain",)))
    if confirmations:
        report.confirmed = build_leaderboard(confirmations)
    return report


def param_importance(report: SweepReport) -> dict[str, float]:
    """fANOVA importance of each parameter over the completed trials ({} with < 3), seeded."""
    done = [t for t in report.trials if t.ranked]
    if len(done) < 3 or not report.params:
        return {}
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    dists: dict[str, Any] = {}
    for key in report.params:
        values = [t.params[key] for t in done]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if numeric and min(values) < max(values):
            dists[key] = FloatDistribution(float(min(values)), float(max(values)),
                                           log=report.log_scale.get(key, False))
        elif not numeric and len({repr(v) for v in values}) > 1:
            dists[key] = CategoricalDistribution(sorted({_choice(v) for v in values}, key=str))
    if not dists:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for t in done:
        study.add_trial(optuna.trial.create_trial(
            params={k: (float(t.params[k]) if isinstance(d, FloatDistribution)
                        else _choice(t.params[k])) for k, d in dists.items()},
            distributions=dists, value=t.objective))
    scores = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    return {k: float(v) for k, v in scores.items()}


def _objective(run: ReportRun) -> float | None:
    value = run.summary.get("objective")
    if run.status != "COMPLETED" or not isinstance(value, int | float):
        return None
    return float(value)


def _last_epoch_knn(store: Store, run_ids: list[int]) -> tuple[dict[int, float], dict[int, int]]:
    from sslbench.report.plots import load_curves

    curves = load_curves(store, run_ids, ["val_knn_top1", "loss"])
    knn = {rid: sorted(c["val_knn_top1"])[-1][1] for rid, c in curves.items()
           if c.get("val_knn_top1")}
    epochs = {rid: len({e for e, _ in c.get("loss", [])}) for rid, c in curves.items()}
    return knn, epochs


def _looks_log(values: list[Any]) -> bool:
    """A positive numeric parameter spanning a factor ≥ 10 is shown (and weighed) on a log axis."""
    nums = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return len(nums) == len(values) > 1 and min(nums) > 0 and max(nums) / min(nums) >= 10


def _choice(value: Any) -> Any:
    return value if isinstance(value, bool | int | float | str) or value is None else repr(value)



def display_rows(report: SweepReport) -> tuple[list[str], list[list[str]]]:
    from sslbench.formatting import format_duration
    from sslbench.report.export import fmt_value, pct

    header = ["rank", "trial", "run", "status", "objective (val)", "last kNN (val)", "epochs",
              "wall", *report.params]
    rows = []
    for rank, t in enumerate(report.trials, 1):
        objective = pct(t.objective) + ("" if t.ranked or t.objective is None else " (test)")
        rows.append([str(rank) if t.ranked else "-",
                     "-" if t.number is None else str(t.number), str(t.run_id), t.status,
                     objective, pct(t.last_knn), str(t.epochs),
                     format_duration(t.duration_s),
                     *[fmt_value(t.params[k]) for k in report.params]])
    return header, rows


def importance_rows(report: SweepReport) -> tuple[list[str], list[list[str]]]:
    return (["parameter", "importance"],
            [[k, f"{v:.3f}"] for k, v in report.importance.items()])


def records(report: SweepReport) -> list[dict[str, Any]]:
    return [{"trial": t.number, "run_id": t.run_id, "status": t.status, "objective": t.objective,
             "objective_split": t.objective_split, "last_knn": t.last_knn, "epochs": t.epochs,
             "wall_s": t.duration_s, **t.params}
            for t in report.trials]


def render(report: SweepReport, fmt: str) -> str:
    """The sweep in an export format (markdown, csv, json, html)."""
    import json

    from sslbench.report import export

    title = f"sweep {report.study}: {report.method} on {report.dataset}"
    header, rows = display_rows(report)
    imp_header, imp_rows = importance_rows(report)
    if fmt == "markdown":
        text = (f"**{for_markdown(title)}** (objective: top-1 % on the validation split)\n\n"
                + export.markdown_table(header, rows, 4))
        if imp_rows:
            text += "\nParameter importance (fANOVA):\n\n" + export.markdown_table(
                imp_header, imp_rows, 1)
        if report.confirmed is not None:
            text += (f"\n{CONFIRMED} (top-1 %, mean ± 95 % CI over the seeds):\n\n"
                     + export.to_markdown(report.confirmed))
        return text
    if fmt == "csv":
        return export.csv_text(records(report))
    if fmt == "json":
        confirmed = export.records(report.confirmed) if report.confirmed is not None else []
        return json.dumps({"study": report.study, "method": report.method,
                           "dataset": report.dataset, "params": report.params,
                           "importance": report.importance, "trials": records(report),
                           "confirmed": confirmed}, indent=2) + "\n"
    if fmt == "html":
        tables = [(title, header, rows)]
        if imp_rows:
            tables.append(("parameter importance (fANOVA)", imp_header, imp_rows))
        if report.confirmed is not None:
            tables.append((CONFIRMED, *export.display_rows(report.confirmed)))
        return export.html_page(title, tables, "Objective and kNN: top-1 in % on the "
                                "validation split.")
    raise ValueError(fmt)


def to_rich(report: SweepReport) -> list[Any]:
    from sslbench.report.export import rich_table

    header, rows = display_rows(report)
    out = [rich_table(f"sweep {report.study}: {report.method} on {report.dataset} "
                      "(val top-1 %)", header, rows, 4)]
    if report.importance:
        out.append(rich_table("parameter importance (fANOVA)", *importance_rows(report), 1))
    if report.confirmed is not None:
        from sslbench.report.export import to_rich as leaderboard_table

        out.append(leaderboard_table(report.confirmed, CONFIRMED))
    return out


CONFIRMED = "the best trial re-run with fresh seeds, on the test split (sweep --confirm)"

