"""Tschannen, Djolonga, Rubenstein, Gelly, Lucic, "On Mutual Information Maximization for
Representation Learning", ICLR 2020, reproduced as their public notebook runs it (google-research,
``mutual_information_representation_learning``); the protocol is in
:mod:`sslbench.reproduce.protocol`.

- ``critics`` (sec. 3.2, Fig. 3; the notebook's ``critic_impact``): MLP encoders 300-300-100 on the
  two halves, bilinear / separable / MLP critics, InfoNCE and NWJ: does a looser bound with a
  simpler critic give a better linear probe than the MLP critic's higher bound?
- ``bijective`` (sec. 3.1, Fig. 1 a, b; ``invertible``): RealNVP encoders, whose MI is fixed;
- ``adversarial`` (sec. 3.1, Fig. 1 c): an invertible encoder trained against a linear classifier;
- ``skip-mlp`` (sec. 3.1, Fig. 2; ``non_invertible``): identity-initialised skip-connection MLPs
  whose Jacobian grows ill-conditioned;
- ``mi-target`` (sec. 3.3, Fig. 4 a, b; ``encoder_impact``): ConvNet vs MLP trained to |Î − t|.

Every cell takes ``--set KEY=VALUE`` infomax keys on top (a smaller RealNVP for a CPU, say); the
summaries give the mean and 95 % Student-t interval over the seeds, differences paired by seed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import torch
from torch import nn

from sslbench.config import RunConfig
from sslbench.data.views import image_half
from sslbench.errors import RunFailure, UserError
from sslbench.eval.logistic import saga_logistic_accuracy
from sslbench.models.encoders import HalfEncoder, glorot_init
from sslbench.models.realnvp import RealNVP
from sslbench.reproduce import Echo, ReproSettings
from sslbench.reproduce.figures import Curves, plot_step_panels
from sslbench.reproduce.parallel import run_cells
from sslbench.reproduce.protocol import (
    ENCODE_CHUNK,
    NON_FINITE,
    Cell,
    Child,
    EpochBatches,
    Evaluate,
    Halves,
    Schedule,
    cell_config,
    encode,
    load_halves,
    log_evaluation,
    open_child,
    raise_if_stopped,
    timed_evaluation,
    with_shared_noise,
)
from sslbench.reproduce.record import add_figure, reproduction_run
from sslbench.reproduce.stats import mean_interval
from sslbench.run.lifecycle import recording, runs_root
from sslbench.store import RunRecord, Store, resolve_db_url
from sslbench.train.checkpoint import CHECKPOINT_NAME, save_checkpoint
from sslbench.train.device import resolve_device, seed_everything
from sslbench.train.interrupt import StopSignals

BOUND_LABELS = {"infonce": "InfoNCE", "nwj": "NWJ"}
CRITIC_LABELS = {"bilinear": "bilinear", "separable": "separable", "mlp": "MLP"}
# minutes of a 21 000-step run on one free core (most of the MLP critic's in its K² pairs)
CRITIC_MINUTES = {"bilinear": 6.0, "separable": 7.0, "mlp": 22.0}
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


def _group_summary(label: str, key: str, runs: list[RunRecord], echo: Echo,
                   bound: bool = True) -> dict[str, float]:
    """Mean and 95 % interval over seeds of the final probe accuracy and (with ``bound``) test
    bound."""
    done = [r for r in runs if r.status == "COMPLETED"]
    out: dict[str, float] = {f"{key}_failed": float(len(runs) - len(done))}
    if not done:
        echo(f"  {label}: no completed run")
        return out
    acc, acc_ci = mean_interval([final(r, "probe_accuracy") for r in done])
    out |= {f"{key}_accuracy": acc, f"{key}_accuracy_ci95": acc_ci}
    text = f"  {label} ({len(done)} seeds): probe {100 * acc:.2f} ± {100 * acc_ci:.2f} %"
    if bound:
        est, est_ci = mean_interval([final(r, "test_bound") for r in done])
        out |= {f"{key}_bound": est, f"{key}_bound_ci95": est_ci}
        text += f", test bound {est:.3f} ± {est_ci:.3f} nats"
    echo(text)
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
    runs_root(s.output_dir, resolve_db_url(s.db))  # the runs' folders: writable, or one line
    cell_config(s.dataset, s.seed, s.overrides)  # a bad --set key: one line, no store written
    return s, schedule, load_halves(s, resolve_device(s.gpus))


def critic_cost(cell: Cell) -> float:
    """A critics cell's relative duration (``--jobs``: the MLP critics start first)."""
    critic = next(o.split("=", 1)[1] for o in cell.overrides if o.startswith("method.critic="))
    return CRITIC_MINUTES.get(critic, 1.0)


def critics(s: ReproSettings, echo: Echo) -> int:
    """Sec. 3.2 / Fig. 3: bilinear, separable and MLP critics with InfoNCE and NWJ, MLP encoders;
    every cell ``--seeds`` times; the probe and the test bound every 1 000 steps."""
    s, schedule, data = prepare(s, Schedule())
    config = _settings_config(s, schedule, data) | {
        "critics": list(CRITIC_LABELS), "bounds": list(BOUND_LABELS), "encoder": "mlp"}
    with reproduction_run("critics", s, config, data.name, echo, resumable=True) as (store,
                                                                                    run_id):
        cells = [(f"{bound} {critic}",
                  Cell(f"{critic_label} critic, {bound_label}, seed {seed}",
                       ("method.encoder=mlp", f"method.critic={critic}", f"method.bound={bound}",
                        *s.overrides), seed))
                 for seed in _seeds(s) for bound, bound_label in BOUND_LABELS.items()
                 for critic, critic_label in CRITIC_LABELS.items()]
        by_group = run_cells(store, run_id, "critics", cells, data, schedule, s, echo,
                             cost=critic_cost)
        runs = {(group.split()[0], group.split()[1]): group_runs
                for group, group_runs in by_group.items()}
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





# -- sec. 3.1: bijective encoders -------------------------------------------------------------


@torch.no_grad()
def flow_inverse_error(flow: nn.Module, data: Halves) -> float:
    """max |g⁻¹(g(x₁)) − x₁| over the test split's top halves: the encoder is still a bijection,
    so I(g₁(x₁); g₂(x₂)) = I(x₁; x₂) is what it was before training."""
    top = image_half(data.test_x, "top").flatten(1)
    return max((flow.inverse(flow(top[i:i + ENCODE_CHUNK])) - top[i:i + ENCODE_CHUNK])
               .abs().max().item() for i in range(0, top.shape[0], ENCODE_CHUNK))


def inverse_error(data: Halves) -> Evaluate:
    """The bijective cells' extra measurement: ``flow_inverse_error`` of the top-half encoder."""
    return lambda method, step: {"inverse_max_error": flow_inverse_error(method.backbone.encoder,
                                                                         data)}


def _start_and_end(runs: list[RunRecord], key: str) -> tuple[tuple[float, float],
                                                              tuple[float, float]]:
    """Mean ± 95 % interval of ``key`` at the first evaluation, and of its change to the last."""
    done = [r for r in runs if r.status == "COMPLETED"]
    first = [curve(r, key)[0][1] for r in done]
    change = [final(r, key) - curve(r, key)[0][1] for r in done]
    return mean_interval(first), mean_interval(change)


def _invertible_summary(label: str, key: str, runs: list[RunRecord], echo: Echo
                        ) -> dict[str, float]:
    """The probe at step 0, its change to the end (mean ± 95 % interval over seeds) and the
    largest |g⁻¹(g(x)) − x| at any seed's last evaluation: an invertible encoder's story."""
    (acc0, _), (change, change_ci) = _start_and_end(runs, "probe_accuracy")
    error = max((final(r, "inverse_max_error") for r in runs if r.status == "COMPLETED"),
                default=math.nan)
    echo(f"  {label}: probe {100 * acc0:.2f} % at step 0, change {100 * change:+.2f} ± "
         f"{100 * change_ci:.2f} points; largest |g⁻¹(g(x)) − x| {error:.1e}")
    return {f"{key}_accuracy_at_step_0": acc0, f"{key}_accuracy_change": change,
            f"{key}_accuracy_change_ci95": change_ci, f"{key}_inverse_max_error": error}


def _cells(seeds: list[int], grid: dict[str, tuple[str, ...]], common: tuple[str, ...],
           noise_std: float = 0.0) -> list[tuple[str, Cell]]:
    """(group, cell) for every seed and every entry of ``grid`` (group label → keys)."""
    return [(group, Cell(f"{group}, seed {seed}", (*keys, *common), seed, noise_std))
            for seed in seeds for group, keys in grid.items()]


def _panels(runs: dict[str, list[RunRecord]], metrics: dict[str, str],
            groups_of: dict[str, list[str]]) -> dict[str, dict[str, Curves]]:
    """Panel title → label → one curve per completed seed, for every (metric, panel group)."""
    return {f"{title}{suffix}": {group: [curve(r, key) for r in runs[group]
                                         if r.status == "COMPLETED"] for group in groups}
            for key, title in metrics.items() for suffix, groups in groups_of.items()}


def bijective(s: ReproSettings, echo: Echo) -> int:
    """Sec. 3.1 / Fig. 1 (a, b): RealNVP encoders (30 additive couplings, hidden [512, 512]),
    bilinear critic, InfoNCE and NWJ: the MI between the views is fixed, yet the bound and the
    probe move."""
    s, schedule, data = prepare(s, Schedule())
    grid = {f"RealNVP, {label}": ("method.encoder=realnvp", "method.critic=bilinear",
                                  f"method.bound={bound}") for bound, label in BOUND_LABELS.items()}
    config = _settings_config(s, schedule, data) | {"grid": {k: list(v) for k, v in grid.items()}}
    with reproduction_run("bijective", s, config, data.name, echo, resumable=True) as (store,
                                                                                      run_id):
        runs = run_cells(store, run_id, "bijective", _cells(_seeds(s), grid, tuple(s.overrides)),
                         data, schedule, s, echo, inverse_error)
        summary: dict[str, float] = {}
        for group, group_runs in runs.items():
            key = "infonce" if "InfoNCE" in group else "nwj"
            summary |= (_group_summary(group, key, group_runs, echo)
                        | _invertible_summary(group, key, group_runs, echo))
        store.update_summary(run_id, **summary)
        path = Path(s.out_dir) / "bijective.png"
        plot_step_panels(path, _panels(runs, {"probe_accuracy": "probe accuracy",
                                              "test_bound": "bound on the test split (nats)"},
                                       {"": list(runs)}),
                         hlines={"bound on the test split (nats)": (
                             math.log(schedule.batch_size), f"log {schedule.batch_size}")})
        add_figure(store, run_id, path, echo)
    return run_id


# -- sec. 3.1: MI maximisation makes encoders hard to invert ----------------------------------

NOISE_STD = 0.05  # the notebook's, shared by the two halves
JACOBIAN_BATCH = 128
PERCENTILES = (0, 20, 40, 60, 80, 100)  # the notebook's bands: min, 20th … 80th, max


def log_condition_numbers(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """log(σ_max / σ_min) of the Jacobian of ``encoder`` (R^d → R^d) at each row of ``x`` [B, d]."""
    jacobians = torch.func.vmap(torch.func.jacrev(lambda v: encoder(v[None])[0]))(x)
    sigma = torch.linalg.svdvals(jacobians.double())
    return (sigma[:, 0] / sigma[:, -1]).log()


def jacobian_conditioning(data: Halves, seed: int) -> Evaluate:
    """The Jacobian's log condition number of the top-half encoder at a fixed batch of noisy
    training images (the notebook uses the training batch of the step): its percentiles."""
    gen = torch.Generator(device=data.train_x.device).manual_seed(seed)
    idx = torch.randperm(data.train_x.shape[0], generator=gen, device=data.train_x.device)
    images = with_shared_noise(data.train_x[idx[:JACOBIAN_BATCH]], NOISE_STD, gen)
    top = image_half(images, "top").flatten(1)

    def measure(method: nn.Module, step: int) -> dict[str, float]:
        logs = log_condition_numbers(method.backbone.encoder, top)
        quantiles = torch.quantile(logs, torch.tensor(PERCENTILES, dtype=logs.dtype) / 100)
        return {f"log_condition_p{p}": q.item() for p, q in zip(PERCENTILES, quantiles,
                                                                strict=True)}

    return measure


def skip_mlp(s: ReproSettings, echo: Echo) -> int:
    """Sec. 3.1 / Fig. 2: skip-connection MLPs (5 dense layers of 392 units) that start as the
    identity, bilinear critic, InfoNCE and NWJ, inputs with noise σ = 0.05: the Jacobian's
    condition number grows as the bound is maximised."""
    s, schedule, data = prepare(s, Schedule())
    grid = {f"skip MLP, {label}": ("method.encoder=skip_mlp", "method.critic=bilinear",
                                   f"method.bound={bound}")
            for bound, label in BOUND_LABELS.items()}
    config = _settings_config(s, schedule, data) | {
        "grid": {k: list(v) for k, v in grid.items()}, "noise_std": NOISE_STD}
    with reproduction_run("skip-mlp", s, config, data.name, echo, resumable=True) as (store,
                                                                                     run_id):
        runs = run_cells(store, run_id, "skip-mlp",
                         _cells(_seeds(s), grid, tuple(s.overrides), NOISE_STD), data, schedule,
                         s, echo, functools.partial(jacobian_conditioning, seed=s.seed))
        summary: dict[str, float] = {}
        for group, group_runs in runs.items():
            key = "infonce" if "InfoNCE" in group else "nwj"
            summary |= _group_summary(group, key, group_runs, echo)
            for p in (60, 100):
                (start, _), (growth, growth_ci) = _start_and_end(group_runs,
                                                                 f"log_condition_p{p}")
                summary |= {f"{key}_log_condition_p{p}_at_step_0": start,
                            f"{key}_log_condition_p{p}_change": growth,
                            f"{key}_log_condition_p{p}_change_ci95": growth_ci}
                echo(f"  {group}: log condition number, percentile {p}: {start:.3f} at step 0, "
                     f"change {growth:+.3f} ± {growth_ci:.3f}")
        store.update_summary(run_id, **summary)
        path = Path(s.out_dir) / "skip_mlp.png"
        metrics = {"probe_accuracy": "probe accuracy", "test_bound": "bound on the test split",
                   "log_condition_p60": "log condition number of the Jacobian, 60th percentile",
                   "log_condition_p100": "log condition number of the Jacobian, maximum"}
        plot_step_panels(path, _panels(runs, metrics, {"": list(runs)}))
        add_figure(store, run_id, path, echo)
    return run_id


# -- sec. 3.3: the encoder matters more than the estimate ---------------------------------------

ENCODERS = {"ConvNet": "tschannen_convnet", "MLP": "mlp"}


def mi_target(s: ReproSettings, echo: Echo) -> int:
    """Sec. 3.3 / Fig. 4 (a, b): the ConvNet and the MLP encoder trained to a target estimate t
    (loss |Î − t|, bilinear critic, t in ``--mi-target``), InfoNCE and NWJ."""
    s, schedule, data = prepare(s, Schedule())
    grid = {f"{net}, {label}, t={t:g}": (f"method.encoder={encoder}", "method.critic=bilinear",
                                          f"method.bound={bound}", f"method.mi_target={t:g}")
            for t in s.mi_targets for bound, label in BOUND_LABELS.items()
            for net, encoder in ENCODERS.items()}
    config = _settings_config(s, schedule, data) | {
        "grid": {k: list(v) for k, v in grid.items()}, "mi_targets": s.mi_targets}
    with reproduction_run("mi-target", s, config, data.name, echo, resumable=True) as (store,
                                                                                      run_id):
        runs = run_cells(store, run_id, "mi-target", _cells(_seeds(s), grid, tuple(s.overrides)),
                         data, schedule, s, echo)
        summary: dict[str, float] = {}
        for group, group_runs in runs.items():
            net, bound, t = group.split(", ")
            summary |= _group_summary(group, f"{net.lower()}_{bound.lower()}_{t}", group_runs,
                                      echo)
        for t in s.mi_targets:
            for label in BOUND_LABELS.values():
                conv, mlp = (runs[f"{net}, {label}, t={t:g}"] for net in ENCODERS)
                diff, ci = _paired_difference(conv, mlp, "probe_accuracy")
                summary |= {f"{label.lower()}_t={t:g}_convnet_minus_mlp_accuracy": diff,
                            f"{label.lower()}_t={t:g}_convnet_minus_mlp_accuracy_ci95": ci}
                echo(f"  {label}, t={t:g}: ConvNet − MLP probe {100 * diff:+.2f} ± "
                     f"{100 * ci:.2f} points")
        store.update_summary(run_id, **summary)
        path = Path(s.out_dir) / "mi_target.png"
        by_bound = {f", {label}": [g for g in runs if f", {label}," in g]
                    for label in BOUND_LABELS.values()}
        plot_step_panels(path, _panels(runs, {"probe_accuracy": "probe accuracy",
                                              "test_bound": "bound on the test split (nats)"},
                                       by_bound))
        add_figure(store, run_id, path, echo)
    return run_id


# -- sec. 3.1: an adversarially trained encoder --------------------------------------------------

ADVERSARIAL = Schedule(steps=4_000, eval_every=400, batch_size=128)
WARMUP_STEPS = 1_000  # of the linear classifier alone, before the game (--quick: 10)
CLASSIFIER_STEPS = 10  # per encoder step
CLASSIFIER_LR, ENCODER_LR = 1e-3, 1e-5


def uniform_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the softmax of ``logits`` against the uniform distribution over the C
    classes, (1/B) Σ_b [logsumexp(l_b) − (1/C) Σ_c l_bc]: the encoder's loss, minimal when the
    classifier's predictions are uniform."""
    return (logits.logsumexp(dim=1) - logits.mean(dim=1)).mean()


def adversarial(s: ReproSettings, echo: Echo) -> int:
    """Sec. 3.1 / Fig. 1 (c): a RealNVP encoder (affine couplings with a softplus scale) trained
    against a linear classifier on its codes (warmed up for 1 000 steps; then 10 classifier steps,
    Adam 10⁻³, per encoder step, Adam 10⁻⁵, towards uniform predictions; 4 000 encoder steps):
    the probe falls while the encoder stays invertible, its MI with the other half unchanged."""
    s = sized(s)
    schedule = schedule_of(s, ADVERSARIAL)
    warmup = WARMUP_STEPS if not s.quick else 10
    runs_root(s.output_dir, resolve_db_url(s.db))  # the runs' folders: writable, or one line
    keys = ("method.encoder=realnvp", "method.realnvp_scale=softplus", *s.overrides)
    cell_config(s.dataset, s.seed, keys)
    data = load_halves(s, resolve_device(s.gpus))
    config = _settings_config(s, schedule, data) | {
        "warmup_steps": warmup, "classifier_steps": CLASSIFIER_STEPS,
        "classifier_lr": CLASSIFIER_LR, "encoder_lr": ENCODER_LR, "encoder": list(keys)}
    with reproduction_run("adversarial", s, config, data.name, echo, resumable=True) as (store,
                                                                                        run_id):
        runs = []
        for seed in _seeds(s):
            cfg = cell_config(data.name, seed, keys)
            identity = {"reproduction": "adversarial", "dataset": data.name, "seed": seed,
                        "overrides": list(keys), "noise_std": 0.0,
                        "protocol": dataclasses.asdict(schedule) | {"warmup_steps": warmup}}
            child = open_child(store, run_id, identity, f"adversarial RealNVP, seed {seed}",
                               cfg.to_dict(), s, data.train_x.device, schedule.rounds, echo)
            if isinstance(child, Child):
                with recording(store, child.run_id):
                    train_adversarial(store, child, cfg, data, schedule, warmup, echo)
                child = store.get_run(child.run_id)
            runs.append(child)
        summary = (_group_summary("adversarial RealNVP", "adversarial", runs, echo, bound=False)
                   | _invertible_summary("adversarial RealNVP", "adversarial", runs, echo))
        store.update_summary(run_id, **summary)
        path = Path(s.out_dir) / "adversarial.png"
        group = {"adversarial RealNVP": runs}
        plot_step_panels(path, _panels(group, {
            "probe_accuracy": "probe accuracy (SAGA, full splits)",
            "classifier_accuracy": "the adversary's test accuracy",
            "encoder_loss": "encoder loss: cross-entropy to uniform",
            "inverse_max_error": "max |g⁻¹(g(x)) − x| on the test split"}, {"": list(group)}))
        add_figure(store, run_id, path, echo)
    return run_id


def train_adversarial(store: Store, child: Child, cfg: RunConfig, data: Halves,
                      schedule: Schedule, warmup: int, echo: Echo) -> None:
    """The notebook's ``train_adversarial``, with an evaluation (and a checkpoint) every
    ``schedule.eval_every`` encoder steps; every classifier and encoder step draws a new batch."""
    c, device = cfg.method, data.train_x.device
    seed_everything(cfg.train.seed)
    pixels = image_half(data.train_x[:1], "top").numel()
    flow = RealNVP(pixels, c.realnvp_layers, (c.realnvp_hidden_dim,) * 2, c.realnvp_scale)
    encoder = HalfEncoder(flow, "top").to(device)
    classifier = glorot_init(nn.Linear(pixels, int(data.train_y.max()) + 1)).to(device)
    opt_c = torch.optim.Adam(classifier.parameters(), lr=CLASSIFIER_LR)
    opt_e = torch.optim.Adam(encoder.parameters(), lr=ENCODER_LR)
    parts = {"encoder": encoder, "classifier": classifier, "opt_c": opt_c, "opt_e": opt_e}
    batches = EpochBatches(data.train_x.shape[0], schedule.batch_size, cfg.train.seed, device)
    step, drawn = 0, 0
    if child.state is not None:
        for key, part in parts.items():
            part.load_state_dict(child.state[key])
        step, drawn = child.state["step"], child.state["drawn"]

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal drawn
        idx = batches(drawn)
        drawn += 1
        return data.train_x[idx], data.train_y[idx]

    def classifier_step() -> None:
        x, y = next_batch()
        with torch.no_grad():
            codes = encoder(x)
        loss = nn.functional.cross_entropy(classifier(codes), y)
        opt_c.zero_grad(set_to_none=True)
        loss.backward()
        opt_c.step()

    def evaluate(module: nn.Module, at: int) -> dict[str, float]:
        train, test = encode(encoder, data.train_x), encode(encoder, data.test_x)
        with torch.no_grad():
            logits = classifier(test)
        probe = saga_logistic_accuracy(train, data.train_y, test, data.test_y, cfg.train.seed)
        return {"probe_accuracy": probe,
                "classifier_accuracy": (logits.argmax(1) == data.test_y).float().mean().item(),
                "encoder_loss": uniform_cross_entropy(logits).item(),
                "inverse_max_error": flow_inverse_error(flow, data)}

    def checkpoint() -> None:
        save_checkpoint(child.run_dir / CHECKPOINT_NAME, {
            "run_id": child.run_id, "step": step, "drawn": drawn,
            **{key: part.state_dict() for key, part in parts.items()}})

    if child.state is None:
        for _ in range(warmup):
            classifier_step()
        log_evaluation(store, child.run_id, schedule, step,
                       timed_evaluation(evaluate, encoder, step), echo)
        checkpoint()
    with StopSignals() as stop, stop.deferring():
        while step < schedule.steps:
            for _ in range(CLASSIFIER_STEPS):
                classifier_step()
            x, _ = next_batch()
            loss = uniform_cross_entropy(classifier(encoder(x)))
            opt_e.zero_grad(set_to_none=True)
            loss.backward()
            opt_e.step()
            step += 1
            if not math.isfinite(loss.item()):
                raise RunFailure(f"{NON_FINITE} at step {step}")
            if step % schedule.eval_every == 0:
                log_evaluation(store, child.run_id, schedule, step,
                               timed_evaluation(evaluate, encoder, step), echo)
            if step % schedule.eval_every == 0 or stop.received is not None:
                checkpoint()
            raise_if_stopped(stop, step)


RUNNERS = {"critics": critics, "bijective": bijective, "adversarial": adversarial,
           "skip-mlp": skip_mlp, "mi-target": mi_target}
