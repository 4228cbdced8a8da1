"""Evaluation protocols recorded in the store, re-evaluation from a checkpoint, and the
supervised-from-scratch baseline.

Each protocol (linear probe, weighted kNN, semi-supervised fine-tuning) evaluates a pretrained
method and is recorded as a child run of its pretrain run, with its own config and metrics; the
supervised baseline is a run of its own (kind ``supervised``). The maths lives in
:mod:`sslbench.eval`; this module records and prints.

A protocol reports on the split ``eval.split`` names, recorded in the child's config: ``test``,
the numbers a run finally reports, with the classifier fit on the whole train split (train + val,
after every choice was made on val); or ``val``, a choice (a sweep trial's objective), fit on
train minus val and scored on the validation split, without the test split in sight.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from sslbench.config import DataConfig, LabelSpec, RunConfig, apply_dotted, parse_semi_spec
from sslbench.data import ImageDataset, load_run_dataset
from sslbench.data.augment import BatchAugment
from sslbench.data.splits import run_validation_split, validation_view
from sslbench.data.transfer import adapt_dataset, encoder_input
from sslbench.errors import UserError
from sslbench.eval.features import extract_features
from sslbench.eval.finetune import FinetuneSettings, LightAugment, finetune
from sslbench.eval.knn import knn_classify
from sslbench.eval.layers import feature_module
from sslbench.eval.linear import AugmentedFeatures, linear_probe
from sslbench.eval.subsets import LabelSubset, label_subset
from sslbench.methods import build_method
from sslbench.models import build_backbone
from sslbench.resolve import check_dataset, config_from_dict
from sslbench.run.lifecycle import CHECKPOINT_ARTIFACT, Echo, RunContext, create_run, recording
from sslbench.store import Store
from sslbench.train.checkpoint import load_checkpoint, load_weights
from sslbench.train.device import resolve_device, seed_everything
from sslbench.train.interrupt import StopSignals

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


def evaluation_data(cfg: RunConfig, dataset: ImageDataset) -> tuple[ImageDataset, dict[str, str]]:
    """What the protocols of ``cfg`` train and score on (the train and test splits of the returned
    dataset), and how a child run records it: its ``split``, what its classifier was ``fit`` on,
    and the ``val_split`` id."""
    split = run_validation_split(dataset, cfg.data)
    if cfg.eval.split == "val":
        where = {"split": "val", "fit": "train-minus-val", "val_split": split.split_id}
        return validation_view(dataset, split), where
    return dataset, {"split": "test", "fit": "train", "val_split": split.split_id}


def _child_config(cfg: RunConfig, parent_id: int, protocol: str, where: dict[str, str],
                  **extra: Any) -> dict[str, Any]:
    return {"protocol": protocol, "parent_run": parent_id, "parent_config_hash": cfg.config_hash(),
            "data": dataclasses.asdict(cfg.data), "seed": cfg.train.seed, **where, **extra}


def _top5(result: dict[str, float]) -> str:
    return f", top-5 {100 * result['top5']:.2f} %" if "top5" in result else ""


def evaluate_linear(ctx: RunContext, method: nn.Module, features: FeatureCache,
                    where: dict[str, str]) -> int:
    """Linear probe of ``method`` at ``eval.linear.layer``, recorded as a child run."""
    cfg, dataset = ctx.cfg, ctx.dataset
    lin = cfg.eval.linear
    feature_module(method, lin.layer)  # an unknown layer is bad input: fail before recording
    child_id = ctx.create_child("linear", _child_config(
        cfg, ctx.run_id, "linear", where, layer=lin.layer, linear=dataclasses.asdict(lin)))
    with recording(ctx.store, child_id):
        train_x, test_x = features.get(lin.layer)
        augmented = (_augmented_features(feature_module(method, lin.layer), dataset, ctx.device)
                     if lin.augment else None)
        result = linear_probe(train_x, dataset.train_labels, test_x, dataset.test_labels,
                              dataset.info.num_classes, lin, seed=cfg.train.seed,
                              device=ctx.device, augmented_features=augmented)
        summary = {f"linear_{k}": v for k, v in result.items()}
        ctx.store.log_metrics(child_id, summary, epoch=lin.epochs)
        ctx.store.update_summary(child_id, **summary)
    ctx.echo(f"run {child_id}: linear probe of run {ctx.run_id} ({lin.layer}) on "
             f"{cfg.data.dataset} {where['split']}: top-1 {100 * result['top1']:.2f} %"
             f"{_top5(result)}")
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


def evaluate_knn(ctx: RunContext, method: nn.Module, features: FeatureCache,
                 where: dict[str, str]) -> int:
    """Weighted kNN (Wu et al. 2018) on the full train split, recorded as a child run."""
    cfg, dataset = ctx.cfg, ctx.dataset
    knn = cfg.eval.knn
    feature_module(method, knn.layer)
    child_id = ctx.create_child("knn", _child_config(
        cfg, ctx.run_id, "knn", where, layer=knn.layer, knn=dataclasses.asdict(knn)))
    with recording(ctx.store, child_id):
        train_x, test_x = features.get(knn.layer)
        result = knn_classify(train_x, dataset.train_labels, test_x, dataset.test_labels,
                              dataset.info.num_classes, knn.k, knn.temperature)
        summary = {f"knn_{k}": v for k, v in result.items()}
        ctx.store.log_metrics(child_id, summary)
        ctx.store.update_summary(child_id, **summary)
    ctx.echo(f"run {child_id}: kNN (k={knn.k}, T={knn.temperature:g}) of run {ctx.run_id} "
             f"({knn.layer}) on {cfg.data.dataset} {where['split']}: top-1 "
             f"{100 * result['top1']:.2f} %{_top5(result)}")
    return child_id


def _finetune_settings(cfg: RunConfig) -> FinetuneSettings:
    s = cfg.eval.semi
    return FinetuneSettings(steps=s.steps, batch_size=s.batch_size, lr=s.lr,
                            weight_decay=s.weight_decay, augment=s.augment)


def _subset_runs(cfg: RunConfig, dataset: ImageDataset, encoder: nn.Module, subset: LabelSubset,
                 device: torch.device, features: Split | None = None) -> dict[str, float]:
    """Fine-tune ``encoder`` on the subset (and linear-probe it if features are given)."""
    info = dataset.info
    idx = subset.indices
    result, _ = finetune(encoder, encoder.out_dim, dataset.train_images[idx],
                         dataset.train_labels[idx], dataset.test_images, dataset.test_labels,
                         info.num_classes, info.mean, info.std, _finetune_settings(cfg), device,
                         seed=cfg.train.seed)
    metrics = {f"finetune_{k}": v for k, v in result.items()}
    if features is not None:
        train_x, test_x = features
        probe = linear_probe(train_x[idx], dataset.train_labels[idx], test_x,
                             dataset.test_labels, info.num_classes, cfg.eval.linear,
                             seed=cfg.train.seed, device=device)
        metrics |= {f"linear_{k}": v for k, v in probe.items()}
    return metrics | {"num_labels": float(idx.shape[0])}


def _label_subset(cfg: RunConfig, dataset: ImageDataset, spec: LabelSpec) -> LabelSubset:
    return label_subset(dataset.train_labels, dataset.info.num_classes, spec, cfg.data.dataset,
                        cfg.eval.semi.split_seed)


def evaluate_semisup(ctx: RunContext, method: nn.Module, features: FeatureCache,
                     where: dict[str, str], spec: LabelSpec) -> int:
    """Fine-tune the backbone + a linear head on a label subset; also a linear probe on it."""
    cfg = ctx.cfg
    # the subset (and its id) is known before the run is recorded; a bad spec writes nothing
    subset = _label_subset(cfg, ctx.dataset, spec)
    child_id = ctx.create_child("semisup", _child_config(
        cfg, ctx.run_id, "semi", where, layer="backbone", labels=subset.spec,
        subset_id=subset.subset_id, per_class=subset.per_class,
        semi=dataclasses.asdict(cfg.eval.semi), linear=dataclasses.asdict(cfg.eval.linear)))
    with recording(ctx.store, child_id):
        metrics = _subset_runs(cfg, ctx.dataset, method.backbone, subset, ctx.device,
                               features.get("backbone"))
        summary = {("num_labels" if k == "num_labels" else f"semi_{k}"): v
                   for k, v in metrics.items()}
        ctx.store.log_metrics(child_id, summary, step=cfg.eval.semi.steps)
        ctx.store.update_summary(child_id, **summary)
    ctx.echo(f"run {child_id}: semi-supervised {subset.spec} ({subset.indices.shape[0]} labels, "
             f"subset {subset.subset_id}) of run {ctx.run_id} on {where['split']}: fine-tuned "
             f"top-1 {100 * metrics['finetune_top1']:.2f} %, linear probe top-1 "
             f"{100 * metrics['linear_top1']:.2f} %")
    return child_id


def run_protocols(ctx: RunContext, method: nn.Module) -> list[int]:
    """Every protocol of ``eval.protocols`` on ``method``, in order, on ``eval.split``; the child
    run ids."""
    data, where = evaluation_data(ctx.cfg, ctx.dataset)
    ctx = dataclasses.replace(ctx, dataset=data)
    features = FeatureCache(method, data, ctx.device)
    children = []
    for protocol in ctx.cfg.eval.protocols:
        name, _, spec = protocol.partition(":")
        if name == "linear":
            children.append(evaluate_linear(ctx, method, features, where))
        elif name == "knn":
            children.append(evaluate_knn(ctx, method, features, where))
        else:
            children.append(evaluate_semisup(ctx, method, features, where,
                                             parse_semi_spec(spec)))
    return children


def check_protocol_inputs(cfg: RunConfig, dataset: ImageDataset, method: nn.Module) -> None:
    """The checks that need the model or the data: the validation split, layers and label
    subsets (drawn from what the protocols will train on)."""
    dataset, _ = evaluation_data(cfg, dataset)
    for protocol in cfg.eval.protocols:
        name, _, spec = protocol.partition(":")
        if name == "linear":
            feature_module(method, cfg.eval.linear.layer)
        elif name == "knn":
            feature_module(method, cfg.eval.knn.layer)
        else:
            _label_subset(cfg, dataset, parse_semi_spec(spec))
    if cfg.eval.knn.monitor_every:
        feature_module(method, cfg.eval.knn.layer)


# -- evaluating a finished run from its checkpoint ---------------------------------------------


def evaluate_run(run_id: int, db: str | None, protocol: str, *,
                 overrides: dict[str, Any] | None = None, data_dir: str | None = None,
                 gpus: int | None = None, echo: Echo = print,
                 eval_dataset: str | None = None) -> int:
    """Run one ``protocol`` (linear, knn, semi:SPEC) on a COMPLETED pretrain run; the child id.

    ``overrides`` are dotted config keys (e.g. ``{"eval.knn.k": 20}``) applied to the stored
    config; everything is validated before anything is written, and the checkpoint is loaded only
    once it is known to be the file the run recorded (checksum) and to belong to it (uid).
    ``eval_dataset``: probe the encoder on this dataset instead of its pretraining one (transfer;
    see :mod:`sslbench.data.transfer`), recorded in the child's config.
    """
    if eval_dataset is not None:
        check_dataset(eval_dataset)
    with StopSignals(), Store.open(db, create=False) as store:
        run = store.get_run(run_id)
        if run.kind != "pretrain":
            raise UserError(f"run {run_id} is a {run.kind} run; {protocol.split(':')[0]} takes a "
                            "pretrain run id (see `sslbench runs list --kind pretrain`)")
        checkpoints = [a for a in run.artifacts if a.name == CHECKPOINT_ARTIFACT]
        if run.status != "COMPLETED" or not checkpoints:
            raise UserError(f"run {run_id} is {run.status} and has no final checkpoint to "
                            "evaluate")
        stored = dict(run.config)
        if data_dir is not None:
            stored["data"] = {**stored["data"], "data_dir": data_dir}
        cfg = config_from_dict(apply_dotted(stored, {**(overrides or {}),
                                                     "eval.protocols": [protocol]}))
        device = resolve_device(gpus if gpus is not None else cfg.train.gpus)
        transfer = None
        if eval_dataset is not None and eval_dataset != cfg.data.dataset:
            cfg, dataset, transfer = _transfer(cfg, eval_dataset, data_dir)
            echo(f"run {run_id}: evaluating its {transfer['pretrain_dataset']} encoder on "
                 f"{eval_dataset}: channels {transfer['channels']}, {transfer['image_size']}")
        else:
            dataset = load_run_dataset(cfg.data, cfg.train.seed)
        recorded = checkpoints[-1]
        state = load_checkpoint(recorded.path, sha256=recorded.sha256, owner=run.uid)
        method = build_method(cfg, dataset.info.channels)
        load_weights(method, state, recorded.path)
        method.to(device)
        check_protocol_inputs(cfg, dataset, method)
        ctx = RunContext(store, run_id, cfg, dataset, device, echo, transfer)
        (child,) = run_protocols(ctx, method)
        return child


def _transfer(cfg: RunConfig, name: str, data_dir: str | None
              ) -> tuple[RunConfig, ImageDataset, dict[str, Any]]:
    """The config and data of an evaluation on dataset ``name`` (from the pretraining's data
    root unless ``data_dir``), adapted to the input of the encoder ``cfg`` pretrained."""
    data = DataConfig(dataset=name, data_dir=data_dir or cfg.data.data_dir,
                      download=cfg.data.download)
    target = load_run_dataset(data, cfg.train.seed)
    adapted, transfer = adapt_dataset(target, encoder_input(cfg.data))
    return dataclasses.replace(cfg, data=data), adapted, transfer


# -- the supervised-from-scratch baseline ------------------------------------------------------


def run_supervised(cfg: RunConfig, spec: LabelSpec, db: str | None, *,
                   echo: Echo = print) -> int:
    """Train a freshly initialised backbone + linear head on the label subset; the run id.

    The same subset, optimizer, steps and augmentation as ``semi:SPEC`` fine-tuning, so its
    top-1 is the number a self-supervised encoder has to beat. ``cfg`` is resolved without a
    method (``resolve_config(None, ...)``).
    """
    device = resolve_device(cfg.train.gpus)
    dataset, where = evaluation_data(cfg, load_run_dataset(cfg.data, cfg.train.seed))
    subset = _label_subset(cfg, dataset, spec)
    config = {"protocol": "supervised", "labels": subset.spec, "subset_id": subset.subset_id,
              "per_class": subset.per_class, "model": dataclasses.asdict(cfg.model),
              "semi": dataclasses.asdict(cfg.eval.semi), "data": dataclasses.asdict(cfg.data),
              "seed": cfg.train.seed, **where}
    with StopSignals(), Store.open(db, create=True) as store:
        run_id = create_run(store, cfg, "supervised", device, config=config)
        with recording(store, run_id):
            seed_everything(cfg.train.seed)
            encoder = build_backbone(cfg.model, dataset.info.channels)
            metrics = _subset_runs(cfg, dataset, encoder, subset, device)
            summary = {k.replace("finetune_", "supervised_"): v for k, v in metrics.items()}
            store.log_metrics(run_id, summary, step=cfg.eval.semi.steps)
            store.update_summary(run_id, **summary)
    echo(f"run {run_id}: supervised from scratch on {subset.spec} of {cfg.data.dataset} "
         f"({subset.indices.shape[0]} labels, subset {subset.subset_id}): top-1 "
         f"{100 * summary['supervised_top1']:.2f} %")
    return run_id
