"""Which runs `sslbench runs gc` collects: the failed, killed and pruned runs older than some days
(rows and files), and the checkpoints of all but the best K runs per method and dataset.

Keeping the best K removes the others' files only: their rows, metrics and evaluations stay, so a
leaderboard's mean ± std still counts every run, not just the survivors. The ranking is the
leaderboard's (a protocol's test top-1, e.g. ``linear``) or a key of the runs' own summaries
(a sweep trial's ``objective``); runs without that score are left alone. It chooses which
checkpoints to keep, never which numbers to report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sslbench.report.table import PRETRAIN_KINDS, Filters, ReportRun, load_runs
from sslbench.store import Store
from sslbench.store.files import inventory

GC_STATUSES = ("FAILED", "KILLED", "PRUNED")


@dataclass
class Collected:
    """The runs to delete and the runs to strip of their files, each with the reason."""

    delete: list[int] = field(default_factory=list)
    strip: list[int] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)


def collect(store: Store, *, now: datetime, failed_older_than_days: float | None = None,
            keep_best: int | None = None, by: str = "linear") -> Collected:
    """What `runs gc` removes (see the module doc)."""
    out = Collected()
    if failed_older_than_days is not None:
        cutoff = now - timedelta(days=failed_older_than_days)
        for run in sorted(store.list_runs(), key=lambda r: r.id):
            if run.status in GC_STATUSES and (run.ended_at or run.created_at) < cutoff:
                out.delete.append(run.id)
                out.reasons[run.id] = (f"{run.status.lower()} over "
                                       f"{failed_older_than_days:g} days ago")
    if keep_best is not None:
        runs = load_runs(store, Filters(status="COMPLETED", kinds=PRETRAIN_KINDS))
        with_files = {r.id for r in inventory(store, [r.id for r in runs]).values() if r.paths}
        groups: dict[tuple[str, str], list[tuple[float, ReportRun]]] = {}
        for run in runs:
            score = run.scores.get(by, run.summary.get(by))
            if isinstance(score, int | float) and not isinstance(score, bool):
                groups.setdefault((run.dataset, run.method), []).append((float(score), run))
        for (dataset, method), scored in sorted(groups.items()):
            scored.sort(key=lambda pair: (-pair[0], pair[1].id))
            for _, run in scored[keep_best:]:
                if run.id in with_files and run.id not in out.delete:
                    out.strip.append(run.id)
                    out.reasons[run.id] = (f"not in the best {keep_best} of {method} on "
                                           f"{dataset} by {by}")
    return out
