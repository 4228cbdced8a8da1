"""Reproductions on correlated Gaussians, where the true MI is known (no data, seconds of CPU).

Both use the optimal critics in closed form (``sslbench.mi.gaussians``): what is left is the
behaviour of the estimators themselves (Poole et al., ICML 2019, Fig. 2; Song & Ermon, ICLR 2020).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import torch

from sslbench.mi.bounds import BOUNDS
from sslbench.mi.gaussians import log_density_ratio, rho_for_mi, sample_correlated
from sslbench.reproduce import Echo, ReproSettings
from sslbench.reproduce.figures import Series, plot_gaussian_bounds, plot_infonce_ceiling
from sslbench.reproduce.record import add_figure, reproduction_run

DIM = 10  # coordinates of x and of y
BATCHES = 20  # batches per point: mean ± std over them
CEILING_TRUE_MI = (1.0, 4.0, 10.0)  # nats
CEILING_KS = (16, 32, 64, 128, 256, 512)
SWEEP_TRUE_MI = (0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0)
SWEEP_K = 128
SHIFT = {"infonce": 0.0, "nwj": 1.0, "dv": 0.0}  # NWJ's optimal critic is 1 + log ratio


def _estimates(bound: str, truth: float, k: int, gen: torch.Generator) -> list[float]:
    rho = rho_for_mi(truth, DIM)
    out = []
    for _ in range(BATCHES):
        x, y = sample_correlated(k, DIM, rho, gen)
        out.append(BOUNDS[bound](log_density_ratio(x, y, rho) + SHIFT[bound]).item())
    return out


def infonce_ceiling(s: ReproSettings, echo: Echo) -> int:
    """InfoNCE with the optimal critic at true MI 1, 4, 10 nats, K = 16 … 512: never above log K."""
    config = {"dim": DIM, "batches": BATCHES, "true_mi": list(CEILING_TRUE_MI),
              "batch_sizes": list(CEILING_KS), "critic": "optimal (closed form)"}
    with reproduction_run("infonce-ceiling", s, config, "gaussian", echo) as (store, run_id):
        gen = torch.Generator().manual_seed(s.seed)
        series: Series = {}
        worst = -math.inf
        for truth in CEILING_TRUE_MI:
            label = f"true MI {truth:g} nats"
            for k in CEILING_KS:
                est = _estimates("infonce", truth, k, gen)
                mean, std = statistics.fmean(est), statistics.stdev(est)
                worst = max(worst, max(est) - math.log(k))
                series.setdefault(label, []).append((k, mean, std))
                store.log_metrics(run_id, {f"infonce_true{truth:g}": mean,
                                           f"infonce_true{truth:g}_std": std,
                                           "log_k": math.log(k)}, step=k)
                echo(f"  K={k:4d} log K={math.log(k):.3f}  true {truth:5.2f}: "
                     f"InfoNCE {mean:.3f} ± {std:.3f}")
        store.update_summary(run_id, max_excess_over_log_k=worst)
        echo(f"run {run_id}: largest estimate − log K over all batches: {worst:.2e} (≤ 0)")
        path = Path(s.out_dir) / "infonce_ceiling.png"
        plot_infonce_ceiling(path, series, CEILING_KS)
        add_figure(store, run_id, path, echo)
    return run_id


def gaussian_bounds(s: ReproSettings, echo: Echo) -> int:
    """InfoNCE, NWJ, DV (optimal critics) at K = 128 as the true MI goes 0.5 → 10 nats."""
    config = {"dim": DIM, "batches": BATCHES, "batch_size": SWEEP_K,
              "true_mi": list(SWEEP_TRUE_MI), "critic": "optimal (closed form)"}
    with reproduction_run("gaussian-bounds", s, config, "gaussian", echo) as (store, run_id):
        gen = torch.Generator().manual_seed(s.seed)
        series: Series = {}
        for truth in SWEEP_TRUE_MI:
            line = []
            for bound in BOUNDS:
                est = _estimates(bound, truth, SWEEP_K, gen)
                mean, std = statistics.fmean(est), statistics.stdev(est)
                series.setdefault(bound, []).append((truth, mean, std))
                store.log_metrics(run_id, {f"{bound}_mean": mean, f"{bound}_std": std,
                                           f"{bound}_bias": mean - truth, "true_mi": truth},
                                  step=round(truth * 10))
                line.append(f"{bound} {mean:6.3f} ± {std:6.3f}")
            echo(f"  true {truth:5.2f}: " + ",  ".join(line))
        last = {b: pts[-1] for b, pts in series.items()}
        store.update_summary(run_id, **{f"{b}_bias_at_max": p[1] - p[0] for b, p in last.items()},
                             **{f"{b}_std_at_max": p[2] for b, p in last.items()})
        path = Path(s.out_dir) / "gaussian_bounds.png"
        plot_gaussian_bounds(path, series, math.log(SWEEP_K))
        add_figure(store, run_id, path, echo)
    return run_id


RUNNERS = {"infonce-ceiling": infonce_ceiling, "gaussian-bounds": gaussian_bounds}
