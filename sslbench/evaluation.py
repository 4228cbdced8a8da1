"""Evaluation protocols recorded in the store, and the per-epoch monitor of a pretraining run.

Each protocol (linear probe, weighted kNN, semi-supervised fine-tuning) evaluates a pretrained
method and is recorded as a child run of its pretrain run, with its own config and metrics;
the supervised-from-scratch baseline is a run of its own (kind ``supervised``). The maths lives
in ``sslbench.eval``; this module loads, records and prints.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from sslbench.config import RunConfig, config_from_dict
from sslbench.data import ImageDataset, load_dataset
from sslbench.data.augment import BatchAugment
from sslbench.errors import RunFailure, UserError
from sslbench.eval.diagnostics import Diagnostics, collapsed_outputs
from sslbench.eval.features import extract_features
from sslbench.eval.finetune import FinetuneSettings, LightAugment, finetune
from sslbench.eval.knn import knn_classify
from sslbench.eval.layers import feature_module
from sslbench.eval.linear import AugmentedFeatures, linear_probe
from sslbench.eval.subsets import LabelSpec, LabelSubset, label_subset, parse_semi_spec
from sslbench.methods import build_method
from sslbench.mi.entropy import BANDWIDTH_RULES
from sslbench.runner import Echo, _device_name, recording
from sslbench.store import Store
from sslbench.train.checkpoint import load_checkpoint, load_method_state
from sslbench.train.device import resolve_device, seed_everything

Split = tuple[torch.Tensor, torch.Tensor]  # (train features, test features)


class FeatureCache:
    """Frozen features of both splits, computed once per layer and shared between protocols."""

    def __init__(self, method: nn.Module, dataset: ImageDataset, device: torch.device) -> None:
        self.method, self.dataset, self.device = method, dataset, device
        self._cache: dict[str, Split] = {}

    def get(self, layer: str) -> Split:
        if layer not in self._cache:
            module, info = feature_module(self.method, layer), self.dataset.info
            self._cache[layer] = (
                extract_features(module, self.dataset.train_images, info.mean, info.std,
                                 self.device),
                extract_features(module, self.dataset.test_images, info.mean, info.std,
                                 self.device),
            )
        return self._cache[layer]


def _child_config(cfg: RunConfig, parent_id: int, protocol: str, **extra: Any) -> dict[str, Any]:
    return {"protocol": protocol, "parent_run": parent_id, "parent_config_hash": cfg.config_hash(),
            "data": dataclasses.asdict(cfg.data), "seed": cfg.train.seed, **extra}


def _create_child(store: Store, cfg: RunConfig, parent_id: int, kind: str, config: dict[str, Any],
                  device: torch.device) -> int:
    return store.create_run(kind=kind, method=cfg.method_name, dataset=cfg.data.dataset,
                            config=config, seed=cfg.train.seed, backbone=cfg.model.backbone,
                            parent_id=parent_id, device=_device_name(device))


def _top5(result: dict[str, float]) -> str:
    return f", top-5 {100 * result['top5']:.2f} %" if "top5" in result else ""


def evaluate_linear(store: Store, parent_id: int, cfg: RunConfig, dataset: ImageDataset,
                    method: nn.Module, device: torch.device, *, echo: Echo = print,
                    features: FeatureCache | None = None) -> int:
    """Linear probe of ``method`` at ``eval.linear.layer``, recorded as a child run."""
    lin = cfg.eval.linear
    features = features or FeatureCache(method, dataset, device)
    feature_module(method, lin.layer)  # an unknown layer is bad input: fail before recording
    config = _child_config(cfg, parent_id, "linear", layer=lin.layer,
                           linear=dataclasses.asdict(lin))
    child_id = _create_child(store, cfg, parent_id, "linear", config, device)
    with recording(store, child_id):
        train_x, test_x = features.get(lin.layer)
        augmented = (_augmented_features(feature_module(method, lin.layer), dataset, device)
                     if lin.augment else None)
        result = linear_probe(train_x, dataset.train_labels, test_x, dataset.test_labels,
                              dataset.info.num_classes, lin, seed=cfg.train.seed, device=device,
                              augmented_features=augmented)
        summary = {f"linear_{k}": v for k, v in result.items()}
        store.log_metrics(child_id, summary, epoch=lin.epochs)
        store.update_summary(child_id, **summary)
    echo(f"run {child_id}: linear probe of run {parent_id} ({lin.layer}) on {cfg.data.dataset} "
         f"test: top-1 {100 * result['top1']:.2f} %{_top5(result)}")
    return child_id


def _augmented_features(module: nn.Module, dataset: ImageDataset,
                        device: torch.device) -> AugmentedFeatures:
    info = dataset.info
    augment = BatchAugment(LightAugment(), mean=info.mean, std=info.std, out_size=info.image_size)
    images = dataset.train_images

    @torch.no_grad()
    def features(idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        module.eval()
        return module(augment(images[idx.cpu()].to(device), generator)).float()

    return features


def evaluate_knn(store: Store, parent_id: int, cfg: RunConfig, dataset: ImageDataset,
                 method: nn.Module, device: torch.device, *, echo: Echo = print,
                 features: FeatureCache | None = None) -> int:
    """Weighted kNN (Wu et al. 2018) on the full train split, recorded as a child run."""
    knn = cfg.eval.knn
    features = features or FeatureCache(method, dataset, device)
    feature_module(method, knn.layer)
    config = _child_config(cfg, parent_id, "knn", layer=knn.layer, knn=dataclasses.asdict(knn))
    child_id = _create_child(store, cfg, parent_id, "knn", config, device)
    with recording(store, child_id):
        train_x, test_x = features.get(knn.layer)
        result = knn_classify(train_x, dataset.train_labels, test_x, dataset.test_labels,
                              dataset.info.num_classes, knn.k, knn.temperature)
        summary = {f"knn_{k}": v for k, v in result.items()}
        store.log_metrics(child_id, summary)
        store.update_summary(child_id, **summary)
    echo(f"run {child_id}: kNN (k={knn.k}, T={knn.temperature:g}) of run {parent_id} "
         f"({knn.layer}) on {cfg.data.dataset} test: top-1 {100 * result['top1']:.2f} %"
         f"{_top5(result)}")
    return child_id


def _finetune_settings(cfg: RunConfig) -> FinetuneSettings:
    s = cfg.eval.semi
    return FinetuneSettings(steps=s.steps, batch_size=s.batch_size, lr=s.lr,
                            weight_decay=s.weight_decay, augment=s.augment)


def _subset_runs(cfg: RunConfig, dataset: ImageDataset, encoder: nn.Module, subset: LabelSubset,
                 device: torch.device, train_features: torch.Tensor | None = None,
                 test_features: torch.Tensor | None = None) -> dict[str, float]:
    """Fine-tune ``encoder`` on the subset (and linear-probe it if features are given)."""
    info = dataset.info
    idx = subset.indices
    result, _ = finetune(encoder, encoder.out_dim, dataset.train_images[idx],
                         dataset.train_labels[idx], dataset.test_images, dataset.test_labels,
                         info.num_classes, info.mean, info.std, _finetune_settings(cfg), device,
                         seed=cfg.train.seed)
    metrics = {f"finetune_{k}": v for k, v in result.items()}
    if train_features is not None and test_features is not None:
        probe = linear_probe(train_features[idx], dataset.train_labels[idx], test_features,
                             dataset.test_labels, info.num_classes, cfg.eval.linear,
                             seed=cfg.train.seed, device=device)
        metrics |= {f"linear_{k}": v for k, v in probe.items()}
    return metrics | {"num_labels": float(idx.shape[0])}


def evaluate_semisup(store: Store, parent_id: int, cfg: RunConfig, dataset: ImageDataset,
                     method: nn.Module, device: torch.device, spec: LabelSpec, *,
                     echo: Echo = print, features: FeatureCache | None = None) -> int:
    """Fine-tune the backbone + a linear head on a label subset; also a linear probe on it."""
    features = features or FeatureCache(method, dataset, device)
    # the subset (and its id) is known before the run is recorded; a bad spec writes nothing
    subset = label_subset(dataset.train_labels, dataset.info.num_classes, spec,
                          cfg.data.dataset, cfg.eval.semi.split_seed)
    config = _child_config(cfg, parent_id, "semi", layer="backbone", labels=subset.spec,
                           subset_id=subset.subset_id, per_class=subset.per_class,
                           semi=dataclasses.asdict(cfg.eval.semi),
                           linear=dataclasses.asdict(cfg.eval.linear))
    child_id = _create_child(store, cfg, parent_id, "semisup", config, device)
    with recording(store, child_id):
        train_x, test_x = features.get("backbone")
        metrics = _subset_runs(cfg, dataset, method.backbone, subset, device, train_x, test_x)
        summary = {("num_labels" if k == "num_labels" else f"semi_{k}"): v
                   for k, v in metrics.items()}
        store.log_metrics(child_id, summary, step=cfg.eval.semi.steps)
        store.update_summary(child_id, **summary)
    echo(f"run {child_id}: semi-supervised {subset.spec} ({subset.indices.shape[0]} labels, subset "
         f"{subset.subset_id}) of run {parent_id}: fine-tuned top-1 "
         f"{100 * metrics['finetune_top1']:.2f} %, linear probe top-1 "
         f"{100 * metrics['linear_top1']:.2f} %")
    return child_id


def run_protocols(store: Store, run_id: int, cfg: RunConfig, dataset: ImageDataset,
                  method: nn.Module, device: torch.device, echo: Echo) -> list[int]:
    """Every protocol of ``cfg.eval.protocols`` on ``method``, in order; the child run ids."""
    features = FeatureCache(method, dataset, device)
    children = []
    for protocol in cfg.eval.protocols:
        name, _, spec = protocol.partition(":")
        if name == "linear":
            child = evaluate_linear(store, run_id, cfg, dataset, method, device, echo=echo,
                                    features=features)
        elif name == "knn":
            child = evaluate_knn(store, run_id, cfg, dataset, method, device, echo=echo,
                                 features=features)
        else:
            child = evaluate_semisup(store, run_id, cfg, dataset, method, device,
                                     parse_semi_spec(spec), echo=echo, features=features)
        children.append(child)
    return children


class EpochMonitor:
    """After each pretraining epoch: diagnostics on a fixed held-out batch and an online kNN.

    The kNN top-1 (``knn_top1``, on ``monitor_train_size`` train images → the test split) is the
    cheap signal a sweep prunes on. A collapse (see ``collapsed_outputs``) is flagged in the
    run's summary and warned about; with ``stop_on_collapse`` it ends the run (FAILED).
    """

    def __init__(self, store: Store, run_id: int, cfg: RunConfig, dataset: ImageDataset,
                 method: nn.Module, device: torch.device, echo: Echo) -> None:
        self.store, self.run_id, self.cfg, self.method, self.echo = (store, run_id, cfg, method,
                                                                     echo)
        self.dataset, self.device = dataset, device
        self.flagged = False
        diag = cfg.eval.diagnostics
        self.diagnostics: Diagnostics | None = None
        if diag.enabled:
            info = dataset.info
            augment = BatchAugment(cfg.augment, mean=info.mean, std=info.std,
                                   out_size=info.image_size)
            held_out = dataset.test_images[:diag.batch_size]
            self.diagnostics = Diagnostics.from_images(
                held_out, augment, device, seed=cfg.train.seed + 2, temperature=diag.temperature,
                kde_kernel=diag.kde_kernel, kde_bandwidth=_bandwidth(diag.kde_bandwidth),
                er_kappa=diag.er_kappa)
        n_train = dataset.train_images.shape[0]
        gen = torch.Generator().manual_seed(cfg.train.seed + 3)
        self.knn_idx = torch.randperm(n_train, generator=gen)[:cfg.eval.knn.monitor_train_size]

    def __call__(self, epoch: int) -> dict[str, float]:
        """The metrics of this epoch; raises RunFailure on collapse if asked to stop."""
        metrics: dict[str, float] = {}
        knn = self.cfg.eval.knn
        if knn.monitor_every and epoch % knn.monitor_every == 0:
            metrics["knn_top1"] = self._online_knn()
        if self.diagnostics is not None:
            metrics |= self.diagnostics.measure(self.method)
            self._check_collapse(epoch, metrics)
        return metrics

    def _online_knn(self) -> float:
        knn, data, info = self.cfg.eval.knn, self.dataset, self.dataset.info
        module = feature_module(self.method, knn.layer)
        train_x = extract_features(module, data.train_images[self.knn_idx], info.mean, info.std,
                                   self.device)
        test_x = extract_features(module, data.test_images, info.mean, info.std, self.device)
        return knn_classify(train_x, data.train_labels[self.knn_idx], test_x, data.test_labels,
                            info.num_classes, knn.k, knn.temperature)["top1"]

    def _check_collapse(self, epoch: int, metrics: dict[str, float]) -> None:
        assert self.diagnostics is not None
        diag = self.cfg.eval.diagnostics
        bad = collapsed_outputs(metrics, self.diagnostics.dims, diag.collapse_ratio)
        metrics["collapsed"] = float(bool(bad))
        if not bad:
            return
        reason = f"representation collapse at epoch {epoch}: {'; '.join(bad)}"
        if not self.flagged:
            self.flagged = True
            self.store.update_summary(self.run_id, collapsed=1.0, collapse_epoch=epoch)
            self.echo(f"run {self.run_id}: warning: {reason}")
        if diag.stop_on_collapse:
            raise RunFailure(reason + " (--stop-on-collapse)")


def _bandwidth(value: str) -> str | float:
    """A bandwidth key as the estimator takes it: a rule name or a number (validated already)."""
    return value if value in BANDWIDTH_RULES else float(value)


# -- evaluating a finished run from its checkpoint ---------------------------------------------


def evaluate_run(run_id: int, db: str | None, protocol: str, *,
                 overrides: dict[str, Any] | None = None, data_dir: str | None = None,
                 gpus: int | None = None, echo: Echo = print) -> int:
    """Run one ``protocol`` (linear, knn, semi:SPEC) on a COMPLETED pretrain run; the child id.

    ``overrides`` are dotted config keys (e.g. ``{"eval.knn.k": 20}``) applied to the stored
    config; everything is validated before anything is written.
    """
    with Store.open(db, create=False) as store:
        run = store.get_run(run_id)
        if run.kind != "pretrain":
            raise UserError(f"run {run_id} is a {run.kind} run; {protocol.split(':')[0]} takes a "
                            "pretrain run id (see `sslbench runs list --kind pretrain`)")
        checkpoints = [a for a in run.artifacts if a.name == "checkpoint"]
        if run.status != "COMPLETED" or not checkpoints:
            raise UserError(f"run {run_id} is {run.status} and has no final checkpoint to "
                            "evaluate")
        stored = dict(run.config)
        if data_dir is not None:
            stored["data"] = {**stored["data"], "data_dir": data_dir}
        stored = _apply(stored, {**(overrides or {}), "eval.protocols": [protocol]})
        cfg = config_from_dict(stored)
        device = resolve_device(gpus if gpus is not None else cfg.train.gpus)
        dataset = _load(cfg)
        state = load_checkpoint(checkpoints[-1].path)
        method = build_method(cfg, dataset.info.channels)
        load_method_state(method, state["method"])
        method.to(device)
        check_protocol_inputs(cfg, dataset, method)
        (child,) = run_protocols(store, run_id, cfg, dataset, method, device, echo)
        return child


def _load(cfg: RunConfig) -> ImageDataset:
    """The dataset exactly as the pretraining run loaded it."""
    d = cfg.data
    return load_dataset(d.dataset, d.data_dir, download=d.download, seed=cfg.train.seed,
                        class_list=d.class_list, image_size=d.image_size)


def _apply(config: dict[str, Any], dotted: dict[str, Any]) -> dict[str, Any]:
    """A copy of the nested ``config`` with ``dotted`` keys set (validated by config_from_dict)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items()}
    for key, value in dotted.items():
        *path, last = key.split(".")
        node = out
        for part in path:
            node[part] = dict(node.get(part) or {})
            node = node[part]
        node[last] = value
    return out


def check_protocol_inputs(cfg: RunConfig, dataset: ImageDataset, method: nn.Module) -> None:
    """The checks that need the model or the data: layers and label subsets."""
    for protocol in cfg.eval.protocols:
        name, _, spec = protocol.partition(":")
        if name == "linear":
            feature_module(method, cfg.eval.linear.layer)
        elif name == "knn":
            feature_module(method, cfg.eval.knn.layer)
        else:
            label_subset(dataset.train_labels, dataset.info.num_classes, parse_semi_spec(spec),
                         cfg.data.dataset, cfg.eval.semi.split_seed)
    if cfg.eval.knn.monitor_every:
        feature_module(method, cfg.eval.knn.layer)


# -- the supervised-from-scratch baseline ------------------------------------------------------


def run_supervised(cfg: RunConfig, spec: LabelSpec, db: str | None, *,
                   echo: Echo = print) -> int:
    """Train a freshly initialised backbone + linear head on the label subset; the run id.

    The same subset, optimizer, steps and augmentation as ``semi:SPEC`` fine-tuning, so its
    top-1 is the number a self-supervised encoder has to beat.
    """
    device = resolve_device(cfg.train.gpus)
    dataset = _load(cfg)
    subset = label_subset(dataset.train_labels, dataset.info.num_classes, spec,
                          cfg.data.dataset, cfg.eval.semi.split_seed)
    config = {"protocol": "supervised", "labels": subset.spec, "subset_id": subset.subset_id,
              "per_class": subset.per_class, "model": dataclasses.asdict(cfg.model),
              "semi": dataclasses.asdict(cfg.eval.semi), "data": dataclasses.asdict(cfg.data),
              "seed": cfg.train.seed}
    with Store.open(db, create=True) as store:
        run_id = store.create_run(kind="supervised", method="supervised",
                                  dataset=cfg.data.dataset, config=config, seed=cfg.train.seed,
                                  backbone=cfg.model.backbone, device=_device_name(device))
        with recording(store, run_id):
            seed_everything(cfg.train.seed)
            from sslbench.models import build_backbone

            encoder = build_backbone(cfg.model, dataset.info.channels)
            metrics = _subset_runs(cfg, dataset, encoder, subset, device)
            summary = {k.replace("finetune_", "supervised_"): v for k, v in metrics.items()}
            store.log_metrics(run_id, summary, step=cfg.eval.semi.steps)
            store.update_summary(run_id, **summary)
    echo(f"run {run_id}: supervised from scratch on {subset.spec} of {cfg.data.dataset} "
         f"({subset.indices.shape[0]} labels, subset {subset.subset_id}): top-1 "
         f"{100 * summary['supervised_top1']:.2f} %")
    return run_id
