"""The benchmarks as recorded runs: check the input, measure, print, store a run of kind ``bench``.

A run is created (RUNNING) once the input is known to be good and ends COMPLETED with its summary
and per-round metrics, or FAILED with the reason (:func:`sslbench.run.lifecycle.recording`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sslbench.config import RunConfig
from sslbench.run.lifecycle import Echo, create_run
from sslbench.store import Store


def run_throughput(cfg: RunConfig, *, steps: int, warmup: int, rounds: int, workers: int,
                   random_data: bool, peak_tflops: float | None, db: str | None,
                   record: bool = True, echo: Echo = print) -> dict[str, float]:
    """Measure (a)-(e) of :mod:`sslbench.bench.throughput` and model FLOPs; returns the summary."""
    import torch

    from sslbench.bench import flops as flops_mod
    from sslbench.bench.throughput import (
        ThroughputSettings,
        measure,
        peak_memory_mb,
        prepare_views,
        random_dataset,
    )
    from sslbench.data import load_run_dataset
    from sslbench.errors import UserError
    from sslbench.methods import build_method
    from sslbench.run.lifecycle import device_label, recording
    from sslbench.train.device import resolve_device, seed_everything
    from sslbench.train.flops import training_flops_per_image

    device = resolve_device(cfg.train.gpus)
    batch = cfg.train.batch_size
    needed = (warmup + steps) * batch
    stream = None
    if random_data:
        if cfg.data.prepared is not None:
            raise UserError("--random-data and data.prepared exclude each other: drop one")
        dataset = random_dataset(cfg.data.dataset, needed, seed=cfg.train.seed)
    elif cfg.data.prepared is not None:  # (f) streams the shards; (a) has their first images
        streamed = dataclasses.replace(cfg.data, storage="stream")
        stream = load_run_dataset(streamed, cfg.train.seed)
        dataset = dataclasses.replace(stream, train_images=stream.pretrain_images[:needed],
                                      unlabeled_images=None, shards=None)
    else:
        dataset = load_run_dataset(cfg.data, cfg.train.seed)
    if dataset.pretrain_images.shape[0] < needed:
        raise UserError(f"{warmup + steps} steps of batch {batch} need {needed} images; "
                        f"{cfg.data.dataset} has {dataset.pretrain_images.shape[0]}: use fewer "
                        "--steps or a smaller --batch-size")
    settings = ThroughputSettings(steps=steps, warmup=warmup, rounds=rounds, workers=workers)
    device_name = device_label(device)
    peak = peak_tflops or (flops_mod.peak_tflops(device_name) if device.type == "cuda" else None)
    config = {"bench": "throughput", "settings": settings.__dict__, "random_data": random_data,
              "peak_tflops": peak, "run": cfg.to_dict()}
    echo(f"throughput of {cfg.method_name} / {cfg.model.backbone} (width {cfg.model.width}) on "
         f"{cfg.data.dataset} ({dataset.source}), batch {batch}, {steps} timed steps "
         f"after {warmup}, {rounds} rounds, on {device_name}")
    with _store(db, record) as store:
        run_id = create_run(store, cfg, "bench", device, config=config)
        with recording(store, run_id):
            seed_everything(cfg.train.seed)
            counted = build_method(cfg, dataset.info.channels).to(device)
            small = replace_batch(cfg, min(batch, 8))
            views = prepare_views(small, dataset, device, 1)
            flops_per_image = training_flops_per_image(counted, views)
            del counted, views
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            result = measure(cfg, dataset, device, settings, echo=echo, stream=stream)
            summary = {**result.summary(), **peak_memory_mb(device),
                       "flops_per_img": flops_per_image,
                       "real_tflops": flops_per_image * result.real / 1e12}
            if peak is not None:
                summary["mfu"] = summary["real_tflops"] / peak
            for path, rates in result.rounds.items():
                for i, rate in enumerate(rates):
                    store.log_metrics(run_id, {f"{path}_img_s": rate}, step=i)
            store.update_summary(run_id, **summary)
    echo(format_throughput(summary, dataset.info.name))
    if record:
        echo(f"recorded as run {run_id}")
    return summary


def replace_batch(cfg: RunConfig, batch: int) -> RunConfig:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=batch))


def format_throughput(s: dict[str, float], dataset: str) -> str:
    lines = [f"(a) real training step, sslbench data path: {s['real_img_s']:9.1f} img/s",
             f"(b) forward+backward+step on prepared views: {s['ceiling_img_s']:9.1f} img/s",
             f"(c) data-path overhead 1 - a/b:              {100 * s['overhead']:9.1f} %"]
    if "conventional_img_s" in s:
        lines += [f"(d) conventional (PIL + DataLoader workers): "
                  f"{s['conventional_img_s']:9.1f} img/s",
                  f"(e) a/d = {s['real_over_conventional']:.2f}x, "
                  f"b/d = {s['ceiling_over_conventional']:.2f}x"]
    lines.append(f"model FLOPs {s['flops_per_img'] / 1e9:.3f} GFLOP per image (2 views, fwd+bwd)"
                 f" → {s['real_tflops']:.3f} TFLOP/s"
                 + (f", MFU {100 * s['mfu']:.1f} %" if "mfu" in s else ""))
    if "stream_img_s" in s:
        lines += [f"(f) streamed from the shards:                {s['stream_img_s']:9.1f} img/s",
                  f"    its overhead 1 - f/b: {100 * s['stream_overhead']:.1f} %, "
                  f"f/a = {s['stream_over_real']:.2f}x"]
    epoch_images = {"cifar10": 50_000, "cifar100": 50_000, "fashion-mnist": 60_000,
                    "mnist": 60_000}.get(dataset)
    if epoch_images:
        lines.append(f"an epoch of {dataset} ({epoch_images} images) at (a): "
                     f"{epoch_images / s['real_img_s']:.1f} s")
    memory = f"peak RSS {s['peak_rss_mb']:.0f} MiB (largest worker {s['peak_worker_rss_mb']:.0f})"
    if "peak_gpu_mb" in s:
        memory += f", peak GPU memory {s['peak_gpu_mb']:.0f} MiB"
    lines.append(memory)
    by_path = {p: s[f"{p}_peak_rss_mb"] for p in ("real", "stream") if f"{p}_peak_rss_mb" in s}
    if by_path:
        lines.append("peak RSS of each path alone: "
                     + ", ".join(f"{p} {mb:.0f} MiB" for p, mb in by_path.items()))
    return "\n".join(lines)


def run_time_to_accuracy(cfg: RunConfig, *, budgets_s: list[float], db: str | None,
                         record: bool = True, echo: Echo = print,
                         with_baselines: bool = True) -> list[dict[str, float]]:
    """Pretrain ``cfg`` once per budget and probe each (see
    :mod:`sslbench.bench.time_to_accuracy`), after the random-init and raw-pixel baselines
    (``with_baselines``); returns the curve. An empty ``budgets_s`` probes the baselines only.

    The probes score on the split ``eval.split`` names, as a run's evaluations do: ``val``
    fits on the train split less the validation images and scores on those, so a curve used to
    choose a recipe never reads the test split; pretraining sees every train image either way."""
    from sslbench.bench.time_to_accuracy import (
        BudgetPoint,
        baselines,
        linear_top1,
        time_to_accuracy,
    )
    from sslbench.config.budget import format_seconds
    from sslbench.data import load_run_dataset
    from sslbench.errors import UserError
    from sslbench.run.evaluate import evaluation_data
    from sslbench.run.lifecycle import recording
    from sslbench.train.contention import SHARED_CORES
    from sslbench.train.device import resolve_device

    if not budgets_s and not with_baselines:
        raise UserError("nothing to measure: give a training budget, or keep the baselines")
    device = resolve_device(cfg.train.gpus)
    dataset = load_run_dataset(cfg.data, cfg.train.seed)
    probed, where = evaluation_data(cfg, dataset)
    split = where["split"]
    config = {"bench": "time-to-accuracy", "budgets_s": sorted(budgets_s), "run": cfg.to_dict(),
              **where}
    schedule = ("a complete schedule for each budget of "
                f"{', '.join(map(format_seconds, sorted(budgets_s)))}" if budgets_s
                else "the baselines only")
    echo(f"time to accuracy of {cfg.method_name} / {cfg.model.backbone} (width "
         f"{cfg.model.width}) on {cfg.data.dataset}, batch {cfg.train.batch_size}: {schedule}; "
         f"linear probe at {cfg.eval.linear.layer}, scored on the {split} split")
    with _store(db, record) as store:
        run_id = create_run(store, cfg, "bench", device, config=config)

        def log(point: BudgetPoint) -> None:
            echo(f"  budget {format_seconds(point.budget_s):>7}: trained {point.train_s:7.1f} s, "
                 f"{point.steps:6d} steps, linear top-1 {100 * point.top1:.2f} %"
                 + (f"  (other processes kept {point.others_cpu:.1f} cores busy: not a clean "
                    "measurement)" if point.others_cpu is not None
                    and point.others_cpu >= SHARED_CORES else ""))
            shared = {} if point.others_cpu is None else {"others_cpu": point.others_cpu}
            store.log_metrics(run_id, {"linear_top1": point.top1, "train_s": point.train_s,
                                       "budget_s": point.budget_s, **shared}, step=point.steps)

        with recording(store, run_id):
            base = baselines(cfg, probed, device) if with_baselines else {}
            for name, top1 in base.items():
                echo(f"  {name + ' (no training)':>26}: linear top-1 {100 * top1:.2f} %")
            if base:
                store.update_summary(run_id, **{f"{k.replace(' ', '_')}_top1": v
                                                for k, v in base.items()})
            curve = time_to_accuracy(cfg, dataset, device, budgets_s=budgets_s, on_point=log,
                                     probe=lambda m: linear_top1(m, cfg, probed, device))
            if curve:
                store.update_summary(run_id, final_top1=curve[-1].top1,
                                     final_budget_s=curve[-1].budget_s,
                                     final_train_s=curve[-1].train_s)
    if record:
        echo(f"recorded as run {run_id}")
    return [{"budget_s": p.budget_s, "train_s": p.train_s, "steps": p.steps, "top1": p.top1}
            for p in curve]


def run_startup(repeats: int, db: str | None, record: bool = True,
                echo: Echo = print) -> dict[str, float]:
    """Wall time of ``sslbench --help`` in a fresh interpreter (median of ``repeats``)."""
    timings = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sslbench", "--help"], check=True,
                       capture_output=True)
        timings.append(time.perf_counter() - t0)
    summary = {"help_s": statistics.median(timings), "help_min_s": min(timings)}
    echo(f"`sslbench --help`: median {summary['help_s']:.3f} s over {repeats} "
         f"(min {summary['help_min_s']:.3f} s)")
    if record:
        with Store.open(db, create=True) as store:
            run_id = store.create_run(kind="bench", method="startup", dataset="none",
                                      config={"bench": "startup", "repeats": repeats}, seed=0,
                                      device="cpu")
            for i, t in enumerate(timings):
                store.log_metrics(run_id, {"help_s": t}, step=i)
            store.update_summary(run_id, **summary)
            store.finish_run(run_id, "COMPLETED")
        echo(f"recorded as run {run_id}")
    return summary


@contextlib.contextmanager
def _store(db: str | None, record: bool) -> Iterator[Store]:
    """The results store, or with ``--no-record`` a throw-away one: the benchmark runs through
    exactly the same calls either way, and nothing is kept."""
    if record:
        with Store.open(db, create=True) as store:
            yield store
        return
    with tempfile.TemporaryDirectory() as tmp, \
            Store.open(str(Path(tmp) / "not-recorded.sqlite"), create=True) as store:
        yield store
