"""The figures of the reproductions (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from sslbench.report.plots import pyplot

Series = dict[str, list[tuple[float, float, float]]]  # label → [(x, mean, std)]


def _save(fig: object, ax: object, path: Path) -> None:
    ax.grid(alpha=0.3)  # type: ignore[attr-defined]
    ax.legend(fontsize=7, loc="best")  # type: ignore[attr-defined]
    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(path, format="png")  # type: ignore[attr-defined]


def plot_infonce_ceiling(path: Path, series: Series, ks: Sequence[int]) -> None:
    """Estimate ± std vs K (log scale) for each true MI, with the ceiling log K."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    ax.plot(ks, [math.log(k) for k in ks], "k--", label="log K (ceiling)")
    for label, pts in series.items():
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                    marker="o", markersize=3, capsize=2, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size K")
    ax.set_ylabel("InfoNCE estimate (nats)")
    _save(fig, ax, path)
    plt.close(fig)


def plot_gaussian_bounds(path: Path, series: Series, log_k: float) -> None:
    """Estimate ± std vs true MI per bound, the truth y = x and InfoNCE's ceiling."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    truths = sorted({p[0] for pts in series.values() for p in pts})
    ax.plot(truths, truths, "k-", lw=0.8, label="true MI")
    ax.axhline(log_k, color="gray", ls="--", label=f"log K = {log_k:.2f}")
    for label, pts in series.items():
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                    marker="o", markersize=3, capsize=2, label=label)
    ax.set_xlabel("true I(X; Y) (nats)")
    ax.set_ylabel("estimate (nats), mean ± std over batches")
    _save(fig, ax, path)
    plt.close(fig)


def plot_curves_and_bars(path: Path, curves: dict[str, list[tuple[int, float]]], ylabel: str,
                         bars: dict[str, float], bar_label: str,
                         hline: tuple[float, str] | None = None) -> None:
    """Left: a per-epoch metric for each run; right: each run's linear top-1 (%)."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 3.8), dpi=100)
    for label, pts in curves.items():
        left.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3,
                  label=label)
    if hline is not None:
        left.axhline(hline[0], color="gray", ls="--", label=hline[1])
    from matplotlib.ticker import MaxNLocator

    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("epoch")
    left.set_ylabel(ylabel)
    _save(fig, left, path)
    names = list(bars)
    right.bar(range(len(names)), [100 * bars[n] for n in names])
    for i, n in enumerate(names):
        right.text(i, 100 * bars[n], f"{100 * bars[n]:.1f}", ha="center", va="bottom", fontsize=7)
    right.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=7)
    right.set_ylabel(bar_label)
    right.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def plot_batch_size(path: Path, series: dict[str, list[tuple[int, float]]]) -> None:
    """Linear top-1 (%) vs batch size (log scale), one line per method."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for label, pts in series.items():
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("linear probe top-1 (%)")
    _save(fig, ax, path)
    plt.close(fig)


Curves = list[list[tuple[int, float]]]  # one (step, value) curve per seed


def _mean_band(curves: Curves) -> tuple[list[int], list[float], list[float]]:
    """Steps every curve has, the mean over the curves and their std (0 for a single one)."""
    steps = sorted(set.intersection(*(({s for s, _ in c}) for c in curves)))
    values = [[dict(c)[s] for c in curves] for s in steps]
    means = [sum(v) / len(v) for v in values]
    stds = [math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
            for v, m in zip(values, means, strict=True)]
    return steps, means, stds


SYMLOG_ABOVE = 1_000.0  # a panel whose band reaches beyond ±this gets a symlog y axis


def plot_step_panels(path: Path, panels: dict[str, dict[str, Curves]],
                     hlines: dict[str, tuple[float, str]] | None = None,
                     columns: int = 2) -> None:
    """One panel per title: each label's mean over seeds against the training step, a band of
    ± one std across the seeds (the notebook's ``ci="sd"``), and an optional reference line."""
    plt = pyplot()
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.8 * columns, 3.4 * rows), dpi=100,
                             squeeze=False)
    for ax, (title, series) in zip(axes.flat, panels.items(), strict=False):
        extreme = 0.0
        for label, curves in series.items():
            curves = [c for c in curves if c]
            if not curves:
                continue
            steps, means, stds = _mean_band(curves)
            extreme = max([extreme, *(abs(m) + s for m, s in zip(means, stds, strict=True))])
            line = ax.plot(steps, means, label=f"{label} (n={len(curves)})", lw=1.5)[0]
            ax.fill_between(steps, [m - s for m, s in zip(means, stds, strict=True)],
                            [m + s for m, s in zip(means, stds, strict=True)],
                            color=line.get_color(), alpha=0.2)
        if hlines and title in hlines:
            ax.axhline(hlines[title][0], color="gray", ls="--", label=hlines[title][1])
        if extreme > SYMLOG_ABOVE:  # e.g. NWJ at a random critic, -10⁷ nats: the rest stays legible
            ax.set_yscale("symlog", linthresh=1.0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a panel whose runs all failed has no curve
            ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
