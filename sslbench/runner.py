"""One experiment end to end: check the input, load the data, record a run, train, evaluate.

Everything that can be bad input (device, dataset, output folder) is checked before the store is
opened, so a bad command writes nothing. Once a run row exists, every way out of it sets its final
status: COMPLETED, FAILED with the reason, or KILLED on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslbench.config import RunConfig, config_from_dict
from sslbench.data import ImageDataset, load_dataset
from sslbench.errors import RunFailure, UserError
from sslbench.eval.features import extract_features
from sslbench.eval.linear import linear_probe
from sslbench.methods import build_method
from sslbench.store import Store
from sslbench.train.device import resolve_device, seed_everything
from sslbench.train.loop import load_checkpoint, pretrain

Echo = Callable[[str], None]


def _check_output_dir(path: str) -> Path:
    root = Path(path).expanduser().resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output dir {str(root)!r} ({exc.strerror}); "
                        "pass train.output_dir=DIR with a writable folder") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise UserError(f"output dir {str(root)!r} is not writable; "
                        "pass train.output_dir=DIR with a writable folder")
    return root


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return "cpu"


@contextlib.contextmanager
def recording(store: Store, run_id: int) -> Iterator[None]:
    """Mark the run FAILED (with the reason) or KILLED if the body does not finish."""
    try:
        yield
    except KeyboardInterrupt:
        store.finish_run(run_id, "KILLED", failure_reason="interrupted (Ctrl-C)")
        raise
    except torch.cuda.OutOfMemoryError as exc:
        reason = f"out of GPU memory: {str(exc).splitlines()[0]}"
        store.finish_run(run_id, "FAILED", failure_reason=reason)
        raise RunFailure(f"run {run_id}: {reason}") from None
    except (RunFailure, UserError) as exc:
        store.finish_run(run_id, "FAILED", failure_reason=str(exc))
        raise RunFailure(f"run {run_id}: {exc}") from None
    except BaseException as exc:
        store.finish_run(run_id, "FAILED", failure_reason=f"{type(exc).__name__}: {exc}")
        raise
    else:
        store.finish_run(run_id, "COMPLETED")


def run_pretrain(cfg: RunConfig, db: str | None, *, echo: Echo = print,
                 show_progress: bool = True) -> int:
    """Pretrain ``cfg.method`` and run ``cfg.eval.protocols`` on it; returns the run id."""
    device = resolve_device(cfg.train.gpus)
    dataset = load_dataset(cfg.data.dataset, cfg.data.data_dir, download=cfg.data.download,
                           seed=cfg.train.seed)
    n_train = dataset.train_images.shape[0]
    if cfg.train.batch_size > n_train:
        raise UserError(f"train.batch_size={cfg.train.batch_size} is larger than the {n_train} "
                        f"training images of {cfg.data.dataset}; use a smaller --batch-size")
    out_root = _check_output_dir(cfg.train.output_dir)
    with Store.open(db, create=True) as store:
        return _pretrain_and_evaluate(store, cfg, dataset, device, out_root, echo, show_progress)


def _pretrain_and_evaluate(store: Store, cfg: RunConfig, dataset: ImageDataset,
                           device: torch.device, out_root: Path, echo: Echo,
                           show_progress: bool) -> int:
    run_id = store.create_run(
        kind="pretrain", method=cfg.method_name, dataset=cfg.data.dataset, config=cfg.to_dict(),
        seed=cfg.train.seed, backbone=cfg.model.backbone, device=_device_name(device),
    )
    echo(f"run {run_id}: pretrain {cfg.method_name} on {cfg.data.dataset} "
         f"({dataset.train_images.shape[0]} images from {dataset.source}) on {device}, "
         f"{cfg.train.epochs} epochs, batch {cfg.train.batch_size}")
    with recording(store, run_id):
        seed_everything(cfg.train.seed)
        method = build_method(cfg, dataset.info.channels)
        run_dir = out_root / str(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)

        def log_epoch(epoch: int, step: int, metrics: dict[str, float]) -> None:
            store.log_metrics(run_id, metrics, step=step, epoch=epoch)

        result = pretrain(cfg, dataset, method, device, run_dir, log_epoch, show_progress)
        store.add_artifact(run_id, "checkpoint", result.checkpoint)
        store.update_summary(run_id, loss=result.final_loss, img_per_s=result.images_per_s,
                             train_s=result.seconds)
    echo(f"run {run_id}: done in {result.seconds:.0f}s, final loss {result.final_loss:.4f}, "
         f"{result.images_per_s:.0f} img/s")

    for protocol in cfg.eval.protocols:
        if protocol == "linear":
            evaluate_linear(store, run_id, cfg, dataset, method.backbone, device, echo=echo)
    return run_id


def evaluate_linear(store: Store, parent_id: int, cfg: RunConfig, dataset: ImageDataset,
                    encoder: nn.Module, device: torch.device, *, echo: Echo = print) -> int:
    """Linear probe of ``encoder``, recorded as a child run of ``parent_id``; returns its id."""
    child_config: dict[str, Any] = {
        "protocol": "linear", "layer": "backbone", "parent_run": parent_id,
        "parent_config_hash": cfg.config_hash(), "linear": dataclasses.asdict(cfg.eval.linear),
        "data": dataclasses.asdict(cfg.data), "seed": cfg.train.seed,
    }
    child_id = store.create_run(
        kind="linear", method=cfg.method_name, dataset=cfg.data.dataset, config=child_config,
        seed=cfg.train.seed, backbone=cfg.model.backbone, parent_id=parent_id,
        device=_device_name(device),
    )
    with recording(store, child_id):
        info = dataset.info
        train_x = extract_features(encoder, dataset.train_images, info.mean, info.std, device)
        test_x = extract_features(encoder, dataset.test_images, info.mean, info.std, device)
        result = linear_probe(train_x, dataset.train_labels, test_x, dataset.test_labels,
                              info.num_classes, cfg.eval.linear, seed=cfg.train.seed,
                              device=device)
        summary = {f"linear_{k}": v for k, v in result.items()}
        store.log_metrics(child_id, summary, epoch=cfg.eval.linear.epochs)
        store.update_summary(child_id, **summary)
    top5 = f", top-5 {100 * result['top5']:.2f} %" if "top5" in result else ""
    echo(f"run {child_id}: linear probe of run {parent_id} on {cfg.data.dataset} test: "
         f"top-1 {100 * result['top1']:.2f} %{top5}")
    return child_id


def run_linear_eval(run_id: int, db: str | None, *, linear: dict[str, Any],
                    data_dir: str | None = None, gpus: int | None = None,
                    echo: Echo = print) -> int:
    """Re-evaluate the encoder of a finished pretrain run from its checkpoint."""
    with Store.open(db, create=False) as store:
        return _linear_eval(store, run_id, linear, data_dir, gpus, echo)


def _linear_eval(store: Store, run_id: int, linear: dict[str, Any], data_dir: str | None,
                 gpus: int | None, echo: Echo) -> int:
    run = store.get_run(run_id)
    if run.kind != "pretrain":
        raise UserError(f"run {run_id} is a {run.kind} run; linear-eval takes a pretrain run id "
                        "(see `sslbench runs list --kind pretrain`)")
    checkpoints = [a for a in run.artifacts if a.name == "checkpoint"]
    if run.status != "COMPLETED" or not checkpoints:
        raise UserError(f"run {run_id} is {run.status} and has no final checkpoint to evaluate")
    stored = dict(run.config)
    stored["eval"] = {**stored.get("eval", {}), "linear": {**stored["eval"]["linear"], **linear}}
    if data_dir is not None:
        stored["data"] = {**stored["data"], "data_dir": data_dir}
    cfg = config_from_dict(stored)
    device = resolve_device(gpus if gpus is not None else cfg.train.gpus)
    dataset = load_dataset(cfg.data.dataset, cfg.data.data_dir, download=cfg.data.download,
                           seed=cfg.train.seed)
    state = load_checkpoint(checkpoints[-1].path)
    method = build_method(cfg, dataset.info.channels)
    method.load_state_dict(state["method"])
    return evaluate_linear(store, run_id, cfg, dataset, method.backbone, device, echo=echo)
