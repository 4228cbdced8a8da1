"""The leaderboard's statistics against hand computations: the 95 % t interval of a mean over
seeds, Welch's test, and which rows are marked tied with the best of their budget."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sslbench.report.export import cell, display_rows, records, to_markdown, verdict
from sslbench.report.stats import mean_interval, t_quantile, welch_p
from sslbench.report.table import Filters, build_leaderboard, load_runs
from sslbench.store import Store

PROV = {"git_commit": "abc", "git_dirty": False, "host": "test", "versions": {}}


def test_interval_by_hand() -> None:
    # values 0.80, 0.82, 0.84: mean 0.82, s = 0.02, s/√3 = 0.011547; t(0.975, 2) = 4.302653
    interval = mean_interval([0.80, 0.82, 0.84])
    assert t_quantile(0.975, 2) == pytest.approx(4.302653, abs=1e-6)
    assert interval.mean == pytest.approx(0.82)
    assert interval.half == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-6)  # 0.049683
    assert (interval.low, interval.high) == pytest.approx((0.770317, 0.869683), abs=1e-6)
    # n = 2: t(0.975, 1) = 12.706205, s = |a − b| / √2, s/√2 = |a − b| / 2
    two = mean_interval([0.5, 0.6])
    assert two.half == pytest.approx(12.706205 * 0.05, rel=1e-6)
    # one run: no interval, not ± 0
    one = mean_interval([0.85])
    assert (one.mean, one.half, one.low, one.n) == (0.85, None, None, 1)


def test_welch_by_hand() -> None:
    # a = (1, 2, 3), b = (4, 5, 6, 7): var 1 and 5/3, se² = 1/3 + 5/12 = 0.75,
    # t = 3.5 / √0.75 = 4.041452, df = 0.75² / ((1/3)² / 2 + (5/12)² / 3) = 4.959184
    p = welch_p([1, 2, 3], [4, 5, 6, 7])
    from scipy.stats import t, ttest_ind

    assert p == pytest.approx(2 * t.sf(4.041452, 4.959184), rel=1e-5)
    assert p == pytest.approx(ttest_ind([1, 2, 3], [4, 5, 6, 7], equal_var=False).pvalue)
    assert welch_p([1.0], [2.0, 3.0]) is None
    assert welch_p([1.0, 1.0], [1.0, 1.0]) == 1.0 and welch_p([1.0, 1.0], [2.0, 2.0]) == 0.0


def test_disjoint_intervals_always_pass_welch() -> None:
    """The tie rule is conservative: two 95 % intervals that just fail to overlap differ at
    p < 0.05 by Welch's test, for any sizes and spreads."""
    for n1 in range(2, 9):
        for n2 in range(2, 9):
            for ratio in (0.01, 0.1, 0.5, 1.0, 2.0, 10.0, 100.0):
                a = [0.0 + d for d in _spread(n1, 1.0)]
                b0 = _spread(n2, ratio)
                ia, ib = mean_interval(a), mean_interval(b0)
                assert ia.half is not None and ib.half is not None
                gap = (ia.half + ib.half) * (1 + 1e-9)
                b = [v + gap for v in b0]
                p = welch_p(a, b)
                assert p is not None and p < 0.05, (n1, n2, ratio, p)


def _spread(n: int, std: float) -> list[float]:
    """``n`` values with mean 0 and sample standard deviation ``std``."""
    raw = [i - (n - 1) / 2 for i in range(n)]
    s = math.sqrt(sum(v * v for v in raw) / (n - 1))
    return [std * v / s for v in raw]


def _run(store: Store, method: str, seed: int, linear: float, budget_s: float | None = 60.0,
         sweep: str | None = None, trial: int | None = None) -> None:
    train = {"epochs": 3, "batch_size": 256, "budget_s": budget_s}
    rid = store.create_run(kind="pretrain", method=method, dataset="fashion-mnist",
                           config={"method": {"name": method}, "train": train}, seed=seed,
                           provenance=PROV, sweep_id=sweep, trial_number=trial)
    store.update_summary(rid, train_s=budget_s or 100.0, train_flops=1e13)
    store.finish_run(rid, "COMPLETED")
    cid = store.create_run(kind="linear", method=method, dataset="fashion-mnist",
                           config={"protocol": "linear", "split": "test"}, seed=seed,
                           parent_id=rid, provenance=PROV)
    store.update_summary(cid, linear_top1=linear)
    store.finish_run(cid, "COMPLETED")


def test_rows_overlapping_the_best_are_marked_tied(tmp_path: Path) -> None:
    db = str(tmp_path / "r.sqlite")
    rows = {
        # best: mean 0.86, half 4.302653 · 0.01 / √3 = 0.024841 → [0.835159, 0.884841]
        "byol": [0.85, 0.86, 0.87],
        # mean 0.82, half 0.049683 → [0.770317, 0.869683]: overlaps the best → tied
        "simclr": [0.80, 0.82, 0.84],
        # mean 0.80, half 0.024841 → [0.775159, 0.824841]: below 0.835159 → lower
        "vicreg": [0.79, 0.80, 0.81],
        # one run: no interval, cannot be compared
        "swav": [0.90],
    }
    with Store.open(db) as store:
        for method, values in rows.items():
            for seed, value in enumerate(values):
                _run(store, method, seed, value)
        # at another budget: compared with its own best only (it is that best)
        _run(store, "moco", 0, 0.10, budget_s=30.0)
        _run(store, "moco", 1, 0.12, budget_s=30.0)
        # a sweep's confirmation runs: a row of their own at the same budget
        for seed, value in enumerate([0.84, 0.85], start=1):
            _run(store, "byol", seed, value, sweep="byol-fm", trial=3)
        board = build_leaderboard(load_runs(store, Filters()))
    by_row = {(g.key["method"], g.key["budget"], g.key["sweep"]): g for g in board.groups}
    # swav's single run has the highest mean: best of its budget, yet nothing can be told
    # apart from it without an interval on its side
    assert verdict(by_row["swav", "1m", None], "linear") == "best"
    assert [verdict(by_row[m, "1m", None], "linear") for m in ("byol", "simclr", "vicreg")] == [
        "n=1", "n=1", "n=1"]
    assert verdict(by_row["moco", "30s", None], "linear") == "best"

    with Store.open(db, create=False) as store:
        runs = [r for r in load_runs(store, Filters(budget="1m")) if r.method != "swav"]
    board = build_leaderboard(runs)
    by_row = {(g.key["method"], g.key["sweep"]): g for g in board.groups}
    marks = {k: verdict(g, "linear") for k, g in by_row.items()}
    assert marks == {("byol", None): "best", ("simclr", None): "tied",
                     ("vicreg", None): "lower", ("byol", "byol-fm, trial 3"): "tied"}
    assert [g.key["method"] for g in board.groups][:2] == ["byol", "byol"]  # by mean
    assert cell(by_row["byol", None], "linear") == "86.00 ± 2.48 (n=3)"
    assert cell(by_row["simclr", None], "linear") == "82.00 ± 4.97 (n=3)"
    vicreg = by_row["vicreg", None].stats["linear"]
    assert vicreg.p_vs_best == pytest.approx(welch_p([0.79, 0.80, 0.81], [0.85, 0.86, 0.87]))
    assert vicreg.p_vs_best < 0.05
    text = to_markdown(board)
    assert "| byol (sweep byol-fm, trial 3) | fashion-mnist | 1m |" in text
    assert "86.00 ± 2.48 (n=3) | best |" in text


def test_a_row_shows_the_most_cpu_other_processes_took(tmp_path: Path) -> None:
    db = str(tmp_path / "r.sqlite")
    with Store.open(db) as store:
        for seed in range(3):
            _run(store, "byol", seed, 0.85)
        _run(store, "simclr", 0, 0.80)  # recorded before the load was measured
        for rid, others in ((1, 0.02), (3, 0.94), (5, 0.1)):  # byol's pretrain runs
            store.update_summary(rid, others_cpu=others)
        board = build_leaderboard(load_runs(store, Filters()))
    by_method = {g.key["method"]: g for g in board.groups}
    assert by_method["byol"].others_cpu == pytest.approx(0.94)
    assert by_method["simclr"].others_cpu is None
    header, rows = display_rows(board)
    column = header.index("other CPU")
    assert {r[0]: r[column] for r in rows} == {"byol": "0.9", "simclr": "-"}
    assert {r["method"]: r["others_cpu_max"] for r in records(board)} == {
        "byol": pytest.approx(0.94), "simclr": None}
