"""PNG figures for a report: training curves per epoch and accuracy by method and protocol.

matplotlib is imported lazily with the Agg backend (no display needed). Every function returns
the number of series it drew, so tests can check a figure without looking at pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select

from sslbench.escape import for_mathtext
from sslbench.report.table import Leaderboard
from sslbench.store import Store
from sslbench.store.models import Metric

# Curves drawn by `sslbench report --plots`: (file stem, metric keys tried in order, y label).
CURVES = (
    ("curve_loss", ("loss",), "training loss"),
    ("curve_knn", ("val_knn_top1", "knn_top1", "knn/top1"), "online kNN top-1"),
    ("curve_collapse", ("collapse_std_backbone", "collapse_std", "collapse/std"),
     "per-channel std of l2-normalised output"),
)


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only, no display), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def load_curves(store: Store, run_ids: Sequence[int], keys: Sequence[str]
                ) -> dict[int, dict[str, list[tuple[int, float]]]]:
    """``{run: {key: [(epoch, value), ...]}}`` for epoch-level metrics, in logging order."""
    out: dict[int, dict[str, list[tuple[int, float]]]] = {}
    if not run_ids:
        return out
    query = (select(Metric.run_id, Metric.key, Metric.epoch, Metric.value)
             .where(Metric.run_id.in_(list(run_ids)), Metric.key.in_(list(keys)),
                    Metric.epoch.is_not(None))
             .order_by(Metric.id))
    with store.bulk_session() as session:
        for run_id, key, epoch, value in session.execute(query):
            out.setdefault(run_id, {}).setdefault(key, []).append((epoch, value))
    return out


def plot_curves(path: Path, curves: dict[int, dict[str, list[tuple[int, float]]]],
                labels: dict[int, str], keys: Sequence[str], ylabel: str) -> int:
    """One line per run that logged one of ``keys``; nothing is written if none did."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    drawn = 0
    for run_id, by_key in curves.items():
        key = next((k for k in keys if k in by_key), None)
        if key is None:
            continue
        points = sorted(by_key[key])
        ax.plot([e for e, _ in points], [v for _, v in points], marker="o", markersize=3,
                label=for_mathtext(labels.get(run_id, f"run {run_id}")))
        drawn += 1
    if drawn:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        fig.savefig(path, format="png")
    plt.close(fig)
    return drawn


def plot_accuracy_bars(path: Path, board: Leaderboard) -> int:
    """Grouped bars: mean top-1 (error bars: the 95 % interval, none for a single run) per
    leaderboard row and protocol."""
    plt = pyplot()
    protocols = [p for p in board.protocols if any(p in g.stats for g in board.groups)]
    if not protocols or not board.groups:
        return 0
    names = [for_mathtext(" ".join(str(v) for k, v in g.key.items()
                               if k != "dataset" and v is not None))
             for g in board.groups]
    fig, ax = plt.subplots(figsize=(max(6.4, 0.6 * len(names) * len(protocols)), 4.0), dpi=100)
    width = 0.8 / len(protocols)
    for i, p in enumerate(protocols):
        xs, means, errs = [], [], []
        for j, g in enumerate(board.groups):
            stat = g.stats.get(p)
            if stat is not None:
                xs.append(j + (i - (len(protocols) - 1) / 2) * width)
                means.append(100 * stat.mean)
                errs.append(100 * (stat.interval.half or 0.0))
        ax.bar(xs, means, width, yerr=errs, capsize=2, label=for_mathtext(p))
    lows = [100 * s.mean for g in board.groups for s in g.stats.values()]
    ax.set_ylim(max(0.0, min(lows) - 10), min(100.0, max(lows) + 5))
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("top-1 (%), mean ± 95 % CI")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return len(protocols)


def write_plots(store: Store, board: Leaderboard, out_dir: Path,
                max_runs: int = 12) -> dict[str, int]:
    """All report figures into ``out_dir``: ``{file name: number of series}`` of those written.

    Curves show the best run (first protocol) of each leaderboard row, at most ``max_runs``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    first = board.protocols[0] if board.protocols else None
    chosen = {}
    for g in board.groups[:max_runs]:
        best = max(g.runs, key=lambda r: r.scores.get(first, -1.0) if first else -r.id)
        chosen[best.id] = f"{g.key['method']} #{best.id}"
    keys = [k for _, ks, _ in CURVES for k in ks]
    curves = load_curves(store, list(chosen), keys)
    for stem, ks, ylabel in CURVES:
        n = plot_curves(out_dir / f"{stem}.png", curves, chosen, ks, ylabel)
        if n:
            written[f"{stem}.png"] = n
    n = plot_accuracy_bars(out_dir / "accuracy_by_method.png", board)
    if n:
        written["accuracy_by_method.png"] = n
    return written


def plot_sweep_params(path: Path, report: Any) -> int:
    """Objective against each searched parameter (one panel each); pruned trials at their last
    online kNN top-1 as open markers. Returns the number of panels."""
    if not report.params:
        return 0
    plt = pyplot()
    n = len(report.params)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), dpi=100, squeeze=False, sharey=True)
    done = [t for t in report.trials if t.ranked]
    pruned = [t for t in report.trials if t.status == "PRUNED" and t.last_knn is not None]
    best = report.best
    for ax, key in zip(axes[0], report.params, strict=True):
        ax.scatter([_axis_value(t.params[key]) for t in done],
                   [100 * t.objective for t in done], label="completed (objective)")
        if pruned:
            ax.scatter([_axis_value(t.params[key]) for t in pruned],
                       [100 * t.last_knn for t in pruned], facecolors="none",
                       edgecolors="tab:red", label="pruned (last online kNN)")
        if best is not None:
            ax.scatter([_axis_value(best.params[key])], [100 * best.objective], marker="*",
                       s=160, color="tab:orange", label="best")
        if report.log_scale.get(key):
            ax.set_xscale("log")
        ax.set_xlabel(for_mathtext(key))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("val top-1 (%)")
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(for_mathtext(f"sweep {report.study}"), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return n


def plot_importance(path: Path, report: Any) -> int:
    """Horizontal bars of the parameter importances; nothing written without any."""
    if not report.importance:
        return 0
    plt = pyplot()
    items = sorted(report.importance.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6.0, 0.5 * len(items) + 1.2), dpi=100)
    ax.barh([for_mathtext(k) for k, _ in items], [v for _, v in items])
    ax.set_xlabel("importance (fANOVA)")
    ax.set_title(for_mathtext(f"sweep {report.study}"), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return len(items)


def write_sweep_plots(report: Any, out_dir: Path) -> dict[str, int]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, draw in (("sweep_params.png", plot_sweep_params),
                       ("sweep_importance.png", plot_importance)):
        n = draw(out_dir / name, report)
        if n:
            written[name] = n
    return written


def _axis_value(value: Any) -> Any:
    return (value if isinstance(value, int | float) and not isinstance(value, bool)
            else for_mathtext(str(value)))
