"""Leaderboards from the run database: one row per method (or config group), a column per protocol.

A *pretrain run* (kind ``pretrain`` or ``trial``) is scored by its evaluation children: each child
is mapped to a protocol label (``linear``, ``knn``, ``semi:1``, ``semi:10``...; ``linear@val``
for an evaluation on the validation split) and its top-1. When a pretrain run has several children
of one protocol (re-evaluations), the newest completed one counts. Runs are grouped by dataset,
method, compute budget (``10m``, ``5000 steps``, ``3 epochs``...), the sweep a confirmation run
belongs to, and any ``--group-by`` config keys; per protocol a group gets the mean over its runs
(one per seed) with its 95 % confidence interval (:mod:`sslbench.report.stats`), and is marked
against the best row of its dataset and budget: ``best``, ``tied`` (the intervals overlap) or
``lower``. Rows are only ever compared at equal budget.

No torch here, and one query for the whole table: the report of 10 000 runs renders in about a
second (``sslbench bench report``).
"""

from __future__ import annotations

import functools
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from sslbench.config.budget import budget_label
from sslbench.errors import UserError
from sslbench.report.stats import Interval, mean_interval, welch_p
from sslbench.store import Store
from sslbench.store.models import Run

PRETRAIN_KINDS = ("pretrain", "trial")
_MISSING = object()


@dataclass(frozen=True)
class Filters:
    """Which pretrain runs enter the report (``None`` = any)."""

    dataset: str | None = None
    method: tuple[str, ...] | None = None
    backbone: str | None = None
    sweep: str | None = None
    status: str | None = "COMPLETED"
    since: datetime | None = None
    until: datetime | None = None
    kinds: tuple[str, ...] = ("pretrain",)  # sweep trials are reported by `report --sweep`
    budget: str | None = None  # a budget label (sslbench.config.budget.budget_label)
    ids: tuple[int, ...] | None = None  # these runs only


@dataclass
class ReportRun:
    """A pretrain run with the scores of its evaluations, as the report needs it."""

    id: int
    kind: str
    method: str
    dataset: str
    backbone: str | None
    status: str
    seed: int
    sweep_id: str | None
    trial_number: int | None
    config: dict[str, Any]
    summary: dict[str, Any]
    created_at: datetime
    duration_s: float | None
    scores: dict[str, float] = field(default_factory=dict)  # protocol → top-1 (fraction)
    collapsed: bool = False

    @property
    def budget(self) -> str:
        return budget_label(self.config.get("train") or {})

    @property
    def confirms(self) -> str | None:
        """``STUDY, trial N`` for a confirmation run of a sweep's best trial (``sweep
        --confirm``), None for any other run."""
        if self.kind != "pretrain" or self.sweep_id is None:
            return None
        return self.sweep_id + ("" if self.trial_number is None else f", trial {self.trial_number}")


@dataclass
class Stat:
    """One protocol's scores within a group: best, mean, sample std, the 95 % interval of the
    mean, and how it compares with the best group of its dataset and budget (``verdict``: best,
    tied, lower, or None when either side is a single run; ``p_vs_best``: Welch's p)."""

    values: list[float]
    verdict: str | None = None
    p_vs_best: float | None = None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def best(self) -> float:
        return max(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n − 1); None for a single run."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    @functools.cached_property
    def interval(self) -> Interval:
        return mean_interval(self.values)


@dataclass
class Group:
    """One leaderboard row."""

    key: dict[str, Any]  # dataset, method and the group-by values
    runs: list[ReportRun]
    stats: dict[str, Stat]

    @property
    def seeds(self) -> int:
        return len({r.seed for r in self.runs})

    def common(self, getter: Any) -> str:
        """The distinct values of ``getter(run)`` in this group, joined ("256" or "256/512")."""
        values = sorted({str(v) for v in (getter(r) for r in self.runs) if v is not None})
        return "/".join(values) if values else "-"

    def mean_of(self, values: Iterable[float | None]) -> float | None:
        finite = [v for v in values if v is not None and math.isfinite(v)]
        return statistics.fmean(finite) if finite else None

    @property
    def wall_s(self) -> float | None:
        return self.mean_of(r.duration_s for r in self.runs)

    @property
    def train_s(self) -> float | None:
        """Mean seconds of training steps (what a wall-clock budget counts)."""
        return self.mean_of(_as_float(r.summary.get("train_s")) for r in self.runs)

    @property
    def train_flops(self) -> float | None:
        return self.mean_of(_as_float(r.summary.get("train_flops")) for r in self.runs)

    @property
    def img_per_s(self) -> float | None:
        return self.mean_of(_as_float(r.summary.get("img_per_s")) for r in self.runs)

    @property
    def collapsed(self) -> int:
        return sum(r.collapsed for r in self.runs)

    @property
    def others_cpu(self) -> float | None:
        """The most CPU cores other processes kept busy while one of the row's runs trained
        (:mod:`sslbench.train.contention`); None when no run recorded it."""
        seen = [v for v in (_as_float(r.summary.get("others_cpu")) for r in self.runs)
                if v is not None and math.isfinite(v)]
        return max(seen) if seen else None


@dataclass
class Leaderboard:
    groups: list[Group]
    protocols: list[str]
    group_by: list[str]


def config_value(config: dict[str, Any], dotted: str) -> Any:
    """``config["a"]["b"]`` for ``"a.b"``; ``_MISSING`` when absent."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def protocol_of(kind: str, config: dict[str, Any]) -> str | None:
    """The leaderboard column of an evaluation run, from its kind and config: ``linear``,
    ``knn``, ``semi:10``... on the test split, the same with ``@val`` on the validation split
    (an evaluation recorded without its split, from before it was recorded, was on test); an
    evaluation on another dataset than the pretraining's (transfer) is a column of its own,
    ``linear@cifar10``."""
    label = _protocol_label(kind, config)
    if label is None:
        return None
    transfer = config.get("transfer")
    if isinstance(transfer, dict):
        label = f"{label}@{transfer.get('eval_dataset')}"
    if config.get("split") == "val":
        return f"{label}{VAL_SUFFIX}"
    return label


VAL_SUFFIX = "@val"


def _protocol_label(kind: str, config: dict[str, Any]) -> str | None:
    if kind == "linear":
        return "linear" if config.get("train_subset") in (None, "all") else None
    if kind == "knn":
        return "knn"
    if kind == "semisup":
        labels = config.get("labels_pct", config.get("labels"))
        if isinstance(labels, int | float):
            return f"semi:{labels:g}"
        if isinstance(labels, str):
            return f"semi:{labels.rstrip('%')}"
        return "semi"
    return None


def score_of(kind: str, summary: dict[str, Any]) -> float | None:
    """The test top-1 an evaluation run reports (as a fraction)."""
    for key in (f"{kind}_top1", "top1", "test_top1"):
        value = _as_float(summary.get(key))
        if value is not None:
            return value
    for key, raw in summary.items():
        value = _as_float(raw)
        if key.endswith("top1") and "train" not in key and value is not None:
            return value
    return None


def protocol_order(protocols: Iterable[str]) -> list[str]:
    """linear, knn, then semi:p by increasing p, then the rest alphabetically; the test split's
    columns before the validation split's."""

    def key(label: str) -> tuple[bool, int, float, str]:
        on_val = label.endswith(VAL_SUFFIX)
        p = label.removesuffix(VAL_SUFFIX)
        if p == "linear":
            return (on_val, 0, 0.0, p)
        if p == "knn":
            return (on_val, 1, 0.0, p)
        if p.startswith("semi:"):
            try:
                return (on_val, 2, float(p[5:]), p)
            except ValueError:
                return (on_val, 2, math.inf, p)
        return (on_val, 3, 0.0, p)

    return sorted(set(protocols), key=key)


def load_runs(store: Store, filters: Filters) -> list[ReportRun]:
    """The pretrain runs passing ``filters`` with their evaluation scores (two queries)."""
    cols = (Run.id, Run.kind, Run.parent_id, Run.method, Run.dataset, Run.backbone, Run.status,
            Run.seed, Run.sweep_id, Run.trial_number, Run.config_json, Run.summary_json,
            Run.created_at, Run.started_at, Run.ended_at)
    query = select(*cols).where(Run.kind.in_(filters.kinds))
    if filters.dataset is not None:
        query = query.where(Run.dataset == filters.dataset)
    if filters.method:
        query = query.where(Run.method.in_(filters.method))
    if filters.backbone is not None:
        query = query.where(Run.backbone == filters.backbone)
    if filters.sweep is not None:
        query = query.where(Run.sweep_id == filters.sweep)
    if filters.ids is not None:
        query = query.where(Run.id.in_(filters.ids))
    if filters.status is not None:
        query = query.where(Run.status == filters.status)
    if filters.since is not None:
        query = query.where(Run.created_at >= filters.since)
    if filters.until is not None:
        query = query.where(Run.created_at < filters.until)

    runs: dict[int, ReportRun] = {}
    with store.bulk_session() as session:
        for row in session.execute(query.order_by(Run.id)):
            summary = json.loads(row.summary_json) if row.summary_json else {}
            duration = ((row.ended_at - row.started_at).total_seconds()
                        if row.started_at is not None and row.ended_at is not None else None)
            run = ReportRun(
                id=row.id, kind=row.kind, method=row.method, dataset=row.dataset,
                backbone=row.backbone, status=row.status, seed=row.seed, sweep_id=row.sweep_id,
                trial_number=row.trial_number, config=json.loads(row.config_json),
                summary=summary, created_at=row.created_at, duration_s=duration,
                collapsed=bool(summary.get("collapsed")),
            )
            if filters.budget is None or run.budget == filters.budget:
                runs[row.id] = run
        if not runs:
            return []
        children = select(Run.parent_id, Run.kind, Run.config_json, Run.summary_json).where(
            Run.parent_id.is_not(None), Run.status == "COMPLETED",
            Run.kind.not_in(PRETRAIN_KINDS),
        ).order_by(Run.id)
        for row in session.execute(children):
            parent = runs.get(row.parent_id)
            if parent is None:
                continue
            summary = json.loads(row.summary_json) if row.summary_json else {}
            if summary.get("collapsed"):
                parent.collapsed = True
            protocol = protocol_of(row.kind, json.loads(row.config_json))
            score = score_of(row.kind, summary)
            if protocol is not None and score is not None:
                parent.scores[protocol] = score  # ordered by id: the newest one wins
    return list(runs.values())


def build_leaderboard(runs: Sequence[ReportRun], *, group_by: Sequence[str] = (),
                      protocols: Sequence[str] | None = None,
                      sort: str | None = None) -> Leaderboard:
    """Group ``runs``, compute per-protocol statistics and mark each group against the best of
    its dataset and budget; sorted by ``sort`` (by default the first protocol: within each
    dataset and budget, the highest mean first)."""
    for key in group_by:
        if not any(config_value(r.config, key) is not _MISSING for r in runs) and runs:
            raise UserError(f"--group-by {key}: no run has that config key; use a dotted key as "
                            "in `sslbench runs show ID` (e.g. method.ema_decay)")
    present = protocol_order(p for r in runs for p in r.scores)
    chosen = list(protocols) if protocols else present

    buckets: dict[tuple[Any, ...], list[ReportRun]] = {}
    for run in runs:
        values = tuple(_hashable(config_value(run.config, k)) for k in group_by)
        buckets.setdefault((run.dataset, run.method, run.budget, run.confirms, *values),
                           []).append(run)

    groups = []
    for key, members in buckets.items():
        stats = {}
        for p in chosen:
            values = [r.scores[p] for r in members if p in r.scores]
            if values:
                stats[p] = Stat(values)
        named = {"dataset": key[0], "method": key[1], "budget": key[2], "sweep": key[3]}
        named.update({k: (None if v is _MISSING else v) for k, v in zip(group_by, key[4:],
                                                                           strict=True)})
        groups.append(Group(named, members, stats))
    for p in chosen:
        mark_against_best(groups, p)

    groups.sort(key=_sort_key(sort or (chosen[0] if chosen else "method"), chosen, group_by))
    return Leaderboard(groups, chosen, list(group_by))


def mark_against_best(groups: Sequence[Group], protocol: str) -> None:
    """Set ``verdict`` and ``p_vs_best`` of every group's ``protocol`` statistic, against the
    group with the highest mean among those of the same dataset and budget."""
    compared: dict[tuple[str, str], list[Stat]] = {}
    for g in groups:
        if protocol in g.stats:
            compared.setdefault((g.key["dataset"], g.key["budget"]), []).append(g.stats[protocol])
    for stats in compared.values():
        best = max(stats, key=lambda s: s.mean)
        for stat in stats:
            if stat is best:
                stat.verdict = "best"
                continue
            overlap = stat.interval.overlaps(best.interval)
            stat.verdict = None if overlap is None else ("tied" if overlap else "lower")
            stat.p_vs_best = welch_p(stat.values, best.values)


SORT_COLUMNS = ("method", "dataset", "budget", "runs", "wall", "img_per_s")


def _sort_key(column: str, protocols: Sequence[str], group_by: Sequence[str]) -> Any:
    if column in protocols:
        # Within a dataset and budget (rows are compared there only): highest mean first,
        # groups without that protocol last.
        return lambda g: (g.key["dataset"], g.key["budget"], column not in g.stats,
                          -(g.stats[column].mean if column in g.stats else 0.0), g.key["method"])
    if column in ("method", "dataset", "budget"):
        return lambda g: (str(g.key[column]), g.key["method"])
    if column in group_by:
        return lambda g: (str(g.key[column]), g.key["method"])
    if column == "runs":
        return lambda g: (-len(g.runs), g.key["method"])
    if column == "wall":
        return lambda g: (g.wall_s is None, g.wall_s or 0.0)
    if column == "img_per_s":
        return lambda g: (g.img_per_s is None, -(g.img_per_s or 0.0))
    known = ", ".join([*protocols, *SORT_COLUMNS, *group_by])
    raise UserError(f"--sort {column}: not a column of this report; choose one of {known}")


def parse_date(text: str, flag: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"{flag} {text!r}: not a date; use YYYY-MM-DD or an ISO time") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _hashable(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    return value


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
