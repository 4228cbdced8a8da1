"""Tschannen, Djolonga, Rubenstein, Gelly, Lucic, "On Mutual Information Maximization for
Representation Learning", ICLR 2020, reproduced as their public notebook runs it (google-research,
``mutual_information_representation_learning``); the protocol is in
:mod:`sslbench.reproduce.protocol`.

- ``critics`` (sec. 3.2, Fig. 3; the notebook's ``critic_impact``): MLP encoders 300-300-100 on the
  two halves, bilinear / separable / MLP critics, InfoNCE and NWJ: does a looser bound with a
  simpler critic give a better linear probe than the MLP critic's higher bound?
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from sslbench.data.views import image_half
from sslbench.errors import UserError
from sslbench.eval.logistic import saga_logistic_accuracy
from sslbench.reproduce import Echo, ReproSettings
from sslbench.reproduce.figures import plot_step_panels
from sslbench.reproduce.protocol import Cell, Halves, Schedule, load_halves, run_cell
from sslbench.reproduce.record import add_figure, reproduction_run
from sslbench.run.lifecycle import check_output_dir
from sslbench.store import RunRecord
from sslbench.train.device import resolve_device

BOUND_LABELS = {"infonce": "InfoNCE", "nwj": "NWJ"}
CRITIC_LABELS = {"bilinear": "bilinear", "separable": "separable", "mlp": "MLP"}
# --quick: the same code paths on a few hundred images, for tests
QUICK = Schedule(steps=40, eval_every=20, batch_size=32)
QUICK_SIZES = (512, 256)  # train, test images


def schedule_of(s: ReproSettings, paper: Schedule) -> Schedule:
    """The paper's schedule, or ``--quick``'s, with ``--steps`` / ``--eval-every`` on top."""
    base = QUICK if s.quick else paper
    schedule = Schedule(steps=s.steps or base.steps, eval_every=s.eval_every or base.eval_every,
                        batch_size=base.batch_size)
    if schedule.steps % schedule.eval_every:
        raise UserError(f"{schedule.steps} steps are not a multiple of the evaluation interval "
                        f"{schedule.eval_every}; pass --steps and --eval-every that divide")
    return schedule


def sized(s: ReproSettings) -> ReproSettings:
    """``--quick`` also means few images (unless sizes were given)."""
    if not s.quick:
        return s
    from dataclasses import replace

    return replace(s, train_size=s.train_size or QUICK_SIZES[0],
                   test_size=s.test_size or QUICK_SIZES[1])


def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % Student-t interval (nan with one value)."""
    from scipy.stats import t

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def curve(run: RunRecord, key: str) -> list[tuple[int, float]]:
    return sorted((m.step or 0, m.value) for m in run.metrics if m.key == key)


def final(run: RunRecord, key: str) -> float:
    points = curve(run, key)
    return points[-1][1] if points else math.nan


def pixel_baseline(data: Halves, seed: int) -> float:
    """The SAGA probe on the raw pixels of the top half (what an identity encoder gives)."""
    top = (image_half(x, "top").flatten(1) for x in (data.train_x, data.test_x))
    return saga_logistic_accuracy(next(top), data.train_y, next(top), data.test_y, seed)


def _seeds(s: ReproSettings) -> list[int]:
    return list(range(s.seed, s.seed + s.seeds))


def _settings_config(s: ReproSettings, schedule: Schedule, data: Halves) -> dict[str, object]:
    return {"dataset": data.name, "train_size": data.train_x.shape[0],
            "test_size": data.test_x.shape[0], "seeds": _seeds(s),
            "protocol": {"steps": schedule.steps, "eval_every": schedule.eval_every,
                         "batch_size": schedule.batch_size},
            "probe": "SAGA logistic regression, C=10, tol=0.1, min-max scaled"}


def _group_summary(label: str, key: str, runs: list[RunRecord], echo: Echo) -> dict[str, float]:
    """Mean and 95 % interval over seeds of the final probe accuracy and test bound."""
    done = [r for r in runs if r.status == "COMPLETED"]
    out: dict[str, float] = {f"{key}_failed": float(len(runs) - len(done))}
    if not done:
        echo(f"  {label}: no completed run")
        return out
    acc, acc_ci = mean_interval([final(r, "probe_accuracy") for r in done])
    est, est_ci = mean_interval([final(r, "test_bound") for r in done])
    out |= {f"{key}_accuracy": acc, f"{key}_accuracy_ci95": acc_ci, f"{key}_bound": est,
            f"{key}_bound_ci95": est_ci}
    echo(f"  {label} ({len(done)} seeds): probe {100 * acc:.2f} ± {100 * acc_ci:.2f} %, "
         f"test bound {est:.3f} ± {est_ci:.3f} nats")
    return out


def _paired_difference(a: list[RunRecord], b: list[RunRecord], key: str) -> tuple[float, float]:
    """Mean and 95 % interval of a − b over the seeds both completed (paired by seed)."""
    by_seed = {r.seed: final(r, key) for r in b if r.status == "COMPLETED"}
    diffs = [final(r, key) - by_seed[r.seed] for r in a
             if r.status == "COMPLETED" and r.seed in by_seed]
    return mean_interval(diffs) if diffs else (math.nan, math.nan)


def prepare(s: ReproSettings, paper: Schedule) -> tuple[ReproSettings, Schedule, Halves]:
    """The settings (``--quick`` applied), the schedule and the data; every input is checked
    before anything is written."""
    s = sized(s)
    schedule = schedule_of(s, paper)
    check_output_dir(s.output_dir)
    return s, schedule, load_halves(s, resolve_device(s.gpus))


def critics(s: ReproSettings, echo: Echo) -> int:
    """Sec. 3.2 / Fig. 3: bilinear, separable and MLP critics with InfoNCE and NWJ, MLP encoders;
    every cell ``--seeds`` times; the probe and the test bound every 1 000 steps."""
    s, schedule, data = prepare(s, Schedule())
    config = _settings_config(s, schedule, data) | {
        "critics": list(CRITIC_LABELS), "bounds": list(BOUND_LABELS), "encoder": "mlp"}
    with reproduction_run("critics", s, config, data.name, echo, resumable=True) as (store,
                                                                                    run_id):
        runs: dict[tuple[str, str], list[RunRecord]] = {}
        for seed in _seeds(s):
            for bound, bound_label in BOUND_LABELS.items():
                for critic, critic_label in CRITIC_LABELS.items():
                    cell = Cell(f"{critic_label} critic, {bound_label}, seed {seed}",
                                ("method.encoder=mlp", f"method.critic={critic}",
                                 f"method.bound={bound}"), seed)
                    runs.setdefault((bound, critic), []).append(
                        run_cell(store, run_id, "critics", cell, data, schedule, s, echo))
        pixels = pixel_baseline(data, s.seed)
        echo(f"  raw top-half pixels: probe {100 * pixels:.2f} %")
        summary: dict[str, float] = {"pixels_top_half_accuracy": pixels}
        for (bound, critic), group in runs.items():
            summary |= _group_summary(f"{CRITIC_LABELS[critic]} critic, {BOUND_LABELS[bound]}",
                                      f"{bound}_{critic}", group, echo)
        for bound, bound_label in BOUND_LABELS.items():
            for simple in ("bilinear", "separable"):
                d_acc = _paired_difference(runs[bound, simple], runs[bound, "mlp"],
                                           "probe_accuracy")
                d_est = _paired_difference(runs[bound, simple], runs[bound, "mlp"], "test_bound")
                summary |= {f"{bound}_{simple}_minus_mlp_accuracy": d_acc[0],
                            f"{bound}_{simple}_minus_mlp_accuracy_ci95": d_acc[1],
                            f"{bound}_{simple}_minus_mlp_bound": d_est[0],
                            f"{bound}_{simple}_minus_mlp_bound_ci95": d_est[1]}
                echo(f"  {bound_label}: {simple} − MLP critic: probe {100 * d_acc[0]:+.2f} ± "
                     f"{100 * d_acc[1]:.2f} points, bound {d_est[0]:+.3f} ± {d_est[1]:.3f} nats")
        store.update_summary(run_id, **summary)
        path = Path(s.out_dir) / "critics.png"
        panels = {}
        for bound, bound_label in BOUND_LABELS.items():
            for key, title in (("probe_accuracy", f"probe accuracy, {bound_label}"),
                               ("test_bound", f"{bound_label} on the test split (nats)")):
                panels[title] = {f"{CRITIC_LABELS[c]} critic": [curve(r, key) for r in group
                                                                 if r.status == "COMPLETED"]
                                 for (b, c), group in runs.items() if b == bound}
        plot_step_panels(path, panels, hlines={
            f"probe accuracy, {b}": (pixels, "top-half pixels") for b in BOUND_LABELS.values()
        } | {"InfoNCE on the test split (nats)": (math.log(schedule.batch_size),
                                                   f"log {schedule.batch_size}")})
        add_figure(store, run_id, path, echo)
    return run_id


RUNNERS = {"critics": critics}

