"""Reproductions that pretrain encoders (on a random subset of the dataset, CPU-sized).

Each pretraining is an ordinary run (the same loop, diagnostics and linear probe as
``sslbench pretrain``), recorded as a child of the reproduction's run; the reproduction keeps the
comparison (per-epoch curves, final numbers) and the figure.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from sslbench.data import ImageDataset, load_dataset
from sslbench.report.plots import load_curves
from sslbench.reproduce import SUBSET_SIZES, Echo, ReproSettings
from sslbench.reproduce.figures import plot_batch_size, plot_curves_and_bars
from sslbench.reproduce.record import add_figure, reproduction_run
from sslbench.resolve import resolve_config
from sslbench.run.pretrain import RunHooks, run_pretrain
from sslbench.store import Store


def load_subset(s: ReproSettings) -> ImageDataset:
    """``train_size`` / ``test_size`` random images of each split (fixed by the seed; 10 000 and
    2 000 by default)."""
    data = load_dataset(s.dataset, s.data_dir, seed=s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    train = torch.randperm(data.train_images.shape[0],
                           generator=gen)[:s.train_size or SUBSET_SIZES[0]]
    test = torch.randperm(data.test_images.shape[0], generator=gen)[:s.test_size or SUBSET_SIZES[1]]
    return dataclasses.replace(
        data, train_images=data.train_images[train].contiguous(),
        train_labels=data.train_labels[train], test_images=data.test_images[test].contiguous(),
        test_labels=data.test_labels[test], unlabeled_images=None)


def _subset_config(s: ReproSettings, data: ImageDataset) -> dict[str, object]:
    return {"dataset": s.dataset, "train_size": data.train_images.shape[0],
            "test_size": data.test_images.shape[0], "seed": s.seed}


def _pretrain(s: ReproSettings, data: ImageDataset, parent: int, method: str, epochs: int,
              overrides: list[str], echo: Echo) -> int:
    flags = {"data.dataset": s.dataset, "data.data_dir": s.data_dir, "train.seed": s.seed,
             "train.gpus": s.gpus, "train.epochs": epochs}
    monitor = f"eval.knn.monitor_train_size={data.train_images.shape[0]}"
    cfg = resolve_config(method, flags=flags, overrides=[monitor, *overrides])
    return run_pretrain(cfg, s.db, echo=echo, show_progress=False,
                        hooks=RunHooks(parent_id=parent), dataset=data)


def _linear_top1(store: Store, run_id: int) -> float:
    linear = [c for c in store.children(run_id) if c.kind == "linear"]
    return float(linear[-1].summary["linear_top1"])


def _last(curves: dict[int, dict[str, list[tuple[int, float]]]], run_id: int, key: str) -> float:
    return sorted(curves[run_id][key])[-1][1]


def simsiam_collapse(s: ReproSettings, echo: Echo) -> int:
    """SimSiam with and without the stop-gradient (Chen & He, CVPR 2021, sec. 4.1, Fig. 2).

    Both without the BatchNorm on the projector's output, which on its own slows the collapse (see
    the README); std of the l2-normalised projector output per epoch and the linear top-1.
    """
    epochs = s.epochs or 3
    data = load_subset(s)
    variants = {"with stop-gradient": "method.stop_gradient=true",
                "without stop-gradient": "method.stop_gradient=false"}
    common = ["method.projector_last_bn=false", "train.batch_size=128"]
    config = {**_subset_config(s, data), "epochs": epochs, "variants": variants,
              "common": common}
    with reproduction_run("simsiam-collapse", s, config, s.dataset, echo) as (store, run_id):
        runs = {label: _pretrain(s, data, run_id, "simsiam", epochs, [*common, override], echo)
                for label, override in variants.items()}
        curves = load_curves(store, list(runs.values()), ["collapse_std_projector"])
        top1 = {label: _linear_top1(store, rid) for label, rid in runs.items()}
        summary = {}
        for label, rid in runs.items():
            key = "sg" if label.startswith("with ") else "no_sg"
            summary[f"{key}_std"] = _last(curves, rid, "collapse_std_projector")
            summary[f"{key}_linear_top1"] = top1[label]
            echo(f"  {label} (run {rid}): std per epoch "
                 + " / ".join(f"{v:.4f}" for _, v in sorted(
                     curves[rid]["collapse_std_projector"]))
                 + f", linear top-1 {100 * top1[label]:.2f} %")
        store.update_summary(run_id, **summary, chance=1 / data.info.num_classes)
        path = Path(s.out_dir) / "simsiam_collapse.png"
        d = resolve_config("simsiam").model.projector_dim
        plot_curves_and_bars(
            path, {label: sorted(curves[rid]["collapse_std_projector"])
                   for label, rid in runs.items()},
            "std of l2-normalised projector output", top1, "linear probe top-1 (%)",
            hline=(1 / math.sqrt(d), f"1/sqrt({d}) (healthy)"))
        add_figure(store, run_id, path, echo)
    return run_id


BATCH_METHODS = ("simclr", "byol", "barlow", "vicreg")


def batch_size(s: ReproSettings, echo: Echo) -> int:
    """Linear top-1 vs batch size for SimCLR (contrastive: negatives come from the batch) and
    BYOL, Barlow Twins, VICReg; the same epochs and learning rate at every size."""
    epochs = s.epochs or 1
    data = load_subset(s)
    config = {**_subset_config(s, data), "epochs": epochs, "methods": list(BATCH_METHODS),
              "batch_sizes": s.batch_sizes}
    with reproduction_run("batch-size", s, config, s.dataset, echo) as (store, run_id):
        series: dict[str, list[tuple[int, float]]] = {}
        for method in BATCH_METHODS:
            for b in s.batch_sizes:
                rid = _pretrain(s, data, run_id, method, epochs, [f"train.batch_size={b}"], echo)
                top1 = _linear_top1(store, rid)
                series.setdefault(method, []).append((b, top1))
                store.log_metrics(run_id, {f"{method}_linear_top1": top1}, step=b)
                echo(f"  {method} batch {b} (run {rid}): linear top-1 {100 * top1:.2f} %")
        store.update_summary(run_id, **{
            f"{m}_spread": max(v for _, v in pts) - min(v for _, v in pts)
            for m, pts in series.items()})
        path = Path(s.out_dir) / "batch_size.png"
        plot_batch_size(path, series)
        add_figure(store, run_id, path, echo)
    return run_id


RUNNERS = {"simsiam-collapse": simsiam_collapse, "batch-size": batch_size}
