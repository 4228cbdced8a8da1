"""Reproductions on correlated Gaussians, where the true MI is known (no data, CPU minutes).

``infonce-ceiling`` and ``gaussian-bounds`` use the optimal critics in closed form
(``sslbench.mi.gaussians``): what is left is the behaviour of the estimators themselves (Poole et
al., ICML 2019, Fig. 2; Song & Ermon, ICLR 2020). ``negative-sampling`` trains a critic, as
Tschannen et al. (ICLR 2020, sec. 4, Fig. 4 c) do, on batches whose pairs are not drawn iid.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import torch

from sslbench.errors import UserError
from sslbench.mi.bounds import BOUNDS
from sslbench.mi.critics import ConcatCritic
from sslbench.mi.gaussians import log_density_ratio, rho_for_mi, sample_correlated
from sslbench.reproduce import Echo, ReproSettings
from sslbench.reproduce.figures import (
    Series,
    plot_gaussian_bounds,
    plot_infonce_ceiling,
    plot_step_panels,
)
from sslbench.reproduce.record import add_figure, reproduction_run
from sslbench.reproduce.stats import mean_interval

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


# Tschannen et al., sec. 4, as their notebook runs it: (x, y) = z + ε with one z per batch
SIGMA_Z = ((1.0, -0.5), (-0.5, 1.0))
SIGMA_EPS = ((1.0, 0.9), (0.9, 1.0))
NEGATIVE_STEPS = 20_000  # Adam steps of the critic, each on a fresh batch (--quick: 400)
NEGATIVE_BATCH = 128
NEGATIVE_LR = 1e-4
NEGATIVE_CRITIC = (10,) * 5  # the MLP critic's hidden layers on [x, y]
WINDOW = 100  # estimates stored as means over this many steps (the notebook smooths, σ = 100)
SAMPLINGS = {"iid": "i.i.d. pairs", "noniid": "one z per batch"}


def gaussian_mi_2d(cov: torch.Tensor) -> float:
    """I(X; Y) = −½ log(1 − ρ²), ρ² = Σ₁₂ Σ₂₁ / (Σ₁₁ Σ₂₂), for (X, Y) ~ N(0, cov)."""
    rho_sq = (cov[0, 1] * cov[1, 0] / (cov[0, 0] * cov[1, 1])).item()
    return -0.5 * math.log(1 - rho_sq)


def _cholesky(*covariances: tuple[tuple[float, float], ...]) -> torch.Tensor:
    """The transposed Cholesky factor of the sum of ``covariances`` (x @ it ~ N(0, the sum))."""
    total = sum(torch.tensor(c, dtype=torch.float64) for c in covariances)
    return torch.linalg.cholesky(total).T  # type: ignore[arg-type]


def sample_pairs(sampling: str, k: int, gen: torch.Generator, factors: dict[str, torch.Tensor]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """K pairs (x_i, y_i): iid from N(0, Σ_z + Σ_ε), or z + ε_i with one z ~ N(0, Σ_z) shared by
    the batch and ε_i ~ N(0, Σ_ε) iid — each pair has the same law, but they are dependent.
    ``factors``: :func:`_cholesky` of Σ_z + Σ_ε (``iid``), Σ_z (``z``) and Σ_ε (``eps``)."""
    if sampling == "iid":
        xy = torch.randn(k, 2, generator=gen, dtype=torch.float64) @ factors["iid"]
    else:
        z = torch.randn(1, 2, generator=gen, dtype=torch.float64) @ factors["z"]
        xy = z + torch.randn(k, 2, generator=gen, dtype=torch.float64) @ factors["eps"]
    xy = xy.float()
    return xy[:, :1], xy[:, 1:]


def train_critic_bound(bound: str, sampling: str, steps: int, seed: int) -> list[float]:
    """The notebook's ``train_bound``: an MLP critic on [x, y] trained by Adam to maximise the
    bound on a fresh batch every step; the estimates, one mean per ``WINDOW`` steps."""
    torch.manual_seed(seed)
    critic = ConcatCritic(1, 1, NEGATIVE_CRITIC)
    optimizer = torch.optim.Adam(critic.parameters(), lr=NEGATIVE_LR)
    gen = torch.Generator().manual_seed(seed)
    factors = {"iid": _cholesky(SIGMA_Z, SIGMA_EPS), "z": _cholesky(SIGMA_Z),
               "eps": _cholesky(SIGMA_EPS)}
    estimates, window = [], []
    for _ in range(steps):
        estimate = BOUNDS[bound](critic(*sample_pairs(sampling, NEGATIVE_BATCH, gen, factors)))
        optimizer.zero_grad(set_to_none=True)
        (-estimate).backward()
        optimizer.step()
        window.append(estimate.item())
        if len(window) == WINDOW:
            estimates.append(statistics.fmean(window))
            window = []
    return estimates


def negative_sampling(s: ReproSettings, echo: Echo) -> int:
    """Tschannen et al., sec. 4 / Fig. 4 (c): InfoNCE and NWJ trained on iid pairs stay below the
    true MI (0.0204 nats); on pairs that share a z within the batch they need not."""
    steps = s.steps or (NEGATIVE_STEPS if not s.quick else 4 * WINDOW)
    if steps % WINDOW:
        raise UserError(f"--steps={steps} must be a multiple of {WINDOW}")
    seeds = list(range(s.seed, s.seed + s.seeds))
    truth = gaussian_mi_2d(torch.tensor(SIGMA_Z) + torch.tensor(SIGMA_EPS))
    config = {"sigma_z": SIGMA_Z, "sigma_eps": SIGMA_EPS, "steps": steps, "seeds": seeds,
              "batch_size": NEGATIVE_BATCH, "lr": NEGATIVE_LR,
              "critic_hidden": list(NEGATIVE_CRITIC), "window": WINDOW, "true_mi": truth}
    with reproduction_run("negative-sampling", s, config, "gaussian", echo) as (store, run_id):
        curves: dict[str, list[list[tuple[int, float]]]] = {}
        summary: dict[str, float] = {"true_mi": truth}
        for bound in ("infonce", "nwj"):
            for sampling, label in SAMPLINGS.items():
                tails = []
                for seed in seeds:
                    means = train_critic_bound(bound, sampling, steps, seed)
                    points = [((i + 1) * WINDOW, v) for i, v in enumerate(means)]
                    for step, value in points:
                        store.log_metrics(run_id, {f"{bound}_{sampling}_seed{seed}": value},
                                          step=step)
                    curves.setdefault(f"{bound}, {label}", []).append(points)
                    tail = means[-max(1, len(means) // 4):]  # the last quarter of training
                    tails.append(statistics.fmean(tail))
                mean, ci = mean_interval(tails)
                summary |= {f"{bound}_{sampling}": mean, f"{bound}_{sampling}_ci95": ci}
                echo(f"  {bound} with {label}: {mean:.4f} ± {ci:.4f} nats over the last quarter "
                     f"({len(seeds)} seeds; true MI {truth:.4f})")
        store.update_summary(run_id, **summary)
        path = Path(s.out_dir) / "negative_sampling.png"
        plot_step_panels(path, {"estimate (nats), means over 100 steps": curves},
                         hlines={"estimate (nats), means over 100 steps": (truth, "true MI")},
                         columns=1)
        add_figure(store, run_id, path, echo)
    return run_id


RUNNERS = {"infonce-ceiling": infonce_ceiling, "gaussian-bounds": gaussian_bounds,
           "negative-sampling": negative_sampling}
