"""One experiment end to end: check the input, load the data, record a run, train, evaluate.

Everything that can be bad input (device, dataset, output folder) is checked before the store is
opened, so a bad command writes nothing. Once a run row exists, every way out of it sets its final
status: COMPLETED, FAILED with the reason, or KILLED on Ctrl-C or SIGTERM (after a checkpoint);
while it runs, a background thread keeps its heartbeat fresh, and a process that dies without a
word (kill -9, power loss) is marked KILLED by the next command that opens the store.
`resume_pretrain` continues a KILLED or FAILED run from its last checkpoint, in the same row.

A distributed run (``--gpus N``, ``--procs N``, several nodes; see ``sslbench.train.distributed``)
is recorded by the launching process, which then starts the workers: rank 0 trains, logs and
evaluates like a single process, the other ranks only train. If a worker fails, the launcher
marks the run FAILED with that worker's rank and reason. Under ``torchrun``, each process is a
worker and rank 0 records the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from sslbench.config import RunConfig, config_from_dict
from sslbench.data import ImageDataset, load_dataset
from sslbench.errors import RunFailure, RunKilled, RunPruned, UserError
from sslbench.methods import build_method
from sslbench.store import Store, resolve_db_url
from sslbench.train import distributed
from sslbench.train.checkpoint import (
    CHECKPOINT_NAME,
    check_resumable,
    load_checkpoint,
    position_of,
)
from sslbench.train.device import resolve_device, seed_everything
from sslbench.train.distributed import LaunchOptions, LaunchPlan
from sslbench.train.interrupt import StopSignals
from sslbench.train.loop import pretrain

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


def _devices_label(device: torch.device, world: int) -> str:
    """``cpu``, ``cuda:NVIDIA H100 ...``; with the backend in a distributed run, ``cpu (gloo)``
    (the run's world size is recorded beside it: ``runs show`` prints ``cpu (gloo) x 2``)."""
    name = _device_name(device)
    return name if world == 1 else f"{name} ({distributed.backend_for(device)})"


@contextlib.contextmanager
def recording(store: Store, run_id: int) -> Iterator[None]:
    """Keep the run's heartbeat while the body runs; mark the run FAILED (with the reason) or
    KILLED if the body does not finish."""
    try:
        with store.beating(run_id):
            yield
    except RunKilled as exc:
        store.finish_run(run_id, "KILLED", failure_reason=f"{exc}; `sslbench resume {run_id}` "
                                                          "continues it")
        raise RunKilled(f"run {run_id}: {exc}", exc.exit_code - 128) from None
    except KeyboardInterrupt:
        store.finish_run(run_id, "KILLED", failure_reason="interrupted (Ctrl-C)")
        raise
    except RunPruned as exc:
        store.finish_run(run_id, "PRUNED", failure_reason=str(exc))
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


@dataclasses.dataclass(frozen=True)
class RunHooks:
    """How a caller (a sweep) takes part in a run: the row it becomes and per-epoch callbacks.

    ``on_epoch`` sees each epoch's metrics after they are stored and may raise
    :class:`~sslbench.errors.RunPruned` to stop the run (it then ends PRUNED).
    """

    kind: str = "pretrain"
    parent_id: int | None = None  # e.g. the reproduction this run belongs to
    sweep_id: str | None = None
    trial_number: int | None = None
    on_start: Callable[[int], None] | None = None
    on_epoch: Callable[[int, dict[str, float]], None] | None = None


def run_pretrain(cfg: RunConfig, db: str | None, *, echo: Echo = print,
                 show_progress: bool = True, hooks: RunHooks | None = None,
                 launch: LaunchOptions | None = None,
                 dataset: ImageDataset | None = None) -> int | None:
    """Pretrain ``cfg.method`` and run ``cfg.eval.protocols`` on it; returns the run id (None on
    the nodes and ranks that do not record the run).

    ``dataset``: already loaded (e.g. a subset, for a reproduction; single process only); else
    loaded from ``cfg``.
    """
    if distributed.launched_worker():  # under torchrun: this process is one of the workers
        return _distributed_worker(cfg.to_dict(), db, None, show_progress, False)
    plan = distributed.plan_launch(cfg.train.gpus, cfg.train.procs, launch or LaunchOptions(),
                                   torch.cuda.device_count())
    if plan is not None and hooks is not None:
        raise UserError("a sweep trial runs in one process: drop train.procs / --gpus N")
    device = (resolve_device(cfg.train.gpus) if plan is None
              else distributed.worker_device(plan.use_gpus, 0))
    if plan is not None and dataset is not None:
        raise UserError("a run on a given (subset) dataset runs in one process: drop "
                        "train.procs / --gpus N")
    if dataset is None:
        dataset = load_dataset(cfg.data.dataset, cfg.data.data_dir, download=cfg.data.download,
                               seed=cfg.train.seed, class_list=cfg.data.class_list,
                               image_size=cfg.data.image_size)
    n_train = dataset.pretrain_images.shape[0]
    if cfg.train.batch_size > n_train:
        raise UserError(f"train.batch_size={cfg.train.batch_size} is larger than the {n_train} "
                        f"training images of {cfg.data.dataset}; use a smaller --batch-size")
    from sslbench.evaluation import check_protocol_inputs

    if plan is not None:
        distributed.check_batch_split(cfg.train.batch_size, plan.world_size)
    check_protocol_inputs(cfg, dataset, build_method(cfg, dataset.info.channels))
    resolve_db_url(db)  # a bad --db is bad input too: found before the output dir is made
    out_root = _check_output_dir(cfg.train.output_dir)
    if plan is not None:
        return _launch_workers(cfg, db, plan, device, echo, show_progress)
    with Store.open(db, create=True) as store:
        return _pretrain_and_evaluate(store, cfg, dataset, device, out_root, echo, show_progress,
                                      hooks or RunHooks())


def _launch_workers(cfg: RunConfig, db: str | None, plan: LaunchPlan, device: torch.device,
                    echo: Echo, show_progress: bool) -> int | None:
    """Record the run (on node 0), start this node's workers, wait; a worker's failure marks
    the run FAILED with its rank and reason, unless rank 0 had finished the pretraining (then
    the failure was an evaluation's, recorded on that evaluation's run)."""
    args = (cfg.to_dict(), db, None, show_progress, True)
    if plan.options.node_rank > 0:  # node 0 records the run; this node's ranks never write
        distributed.launch(_distributed_worker, args, plan)
        return None
    with Store.open(db, create=True) as store:
        run_id = store.create_run(
            kind="pretrain", method=cfg.method_name, dataset=cfg.data.dataset,
            config=cfg.to_dict(), seed=cfg.train.seed, backbone=cfg.model.backbone,
            device=_devices_label(device, plan.world_size), world_size=plan.world_size,
        )
        echo(f"run {run_id}: starting {plan.world_size} workers "
             f"({plan.nproc_per_node} per node on {plan.options.nnodes} node(s), "
             f"{distributed.backend_for(device)})")
        try:
            distributed.launch(_distributed_worker, (*args[:2], run_id, *args[3:]), plan,
                               run_name=f"sslbench-run-{run_id}")
        except BaseException as exc:
            if store.get_run(run_id).status != "COMPLETED":
                interrupted = isinstance(exc, KeyboardInterrupt)
                store.finish_run(run_id, "KILLED" if interrupted else "FAILED",
                                 failure_reason="interrupted" if interrupted
                                 else (str(exc) or type(exc).__name__))
            if isinstance(exc, RunFailure):
                raise RunFailure(f"run {run_id}: {exc}") from None
            raise
    return run_id


def _distributed_worker(config: dict[str, Any], db: str | None, run_id: int | None,
                        show_progress: bool, launched_by_sslbench: bool) -> int | None:
    """One worker of a distributed run: rank 0 records (the run ``run_id``, or a new one when
    None) and evaluates as a single process would; the other ranks only train."""
    cfg = config_from_dict(config)
    try:
        use_gpus = cfg.train.procs == 1 and resolve_device(cfg.train.gpus).type == "cuda"
        device = distributed.init_worker(use_gpus)
        # Launched by sslbench, the launcher has fetched the data; under torchrun, each worker may.
        download = cfg.data.download and not launched_by_sslbench
        dataset = load_dataset(cfg.data.dataset, cfg.data.data_dir, download=download,
                               seed=cfg.train.seed, class_list=cfg.data.class_list,
                               image_size=cfg.data.image_size)
        distributed.check_batch_split(cfg.train.batch_size, distributed.world_size())
        if distributed.is_main():
            out_root = _check_output_dir(cfg.train.output_dir)
            with Store.open(db, create=True) as store:
                return _pretrain_and_evaluate(store, cfg, dataset, device, out_root, print,
                                              show_progress, RunHooks(), run_id=run_id)
        seed_everything(cfg.train.seed)
        method = build_method(cfg, dataset.info.channels)
        pretrain(cfg, dataset, method, device, Path(cfg.train.output_dir), show_progress=False)
        return None
    except BaseException as exc:
        distributed.record_failure(exc)
        if not launched_by_sslbench:
            raise
        if not isinstance(exc, RunFailure | UserError | KeyboardInterrupt):
            traceback.print_exc()
        raise SystemExit(1) from None  # the reason is in the launcher's error file
    finally:
        distributed.shutdown()


def _pretrain_and_evaluate(store: Store, cfg: RunConfig, dataset: ImageDataset,
                           device: torch.device, out_root: Path, echo: Echo,
                           show_progress: bool, hooks: RunHooks, run_id: int | None = None) -> int:
    """Train and evaluate; ``run_id`` is the row a launcher recorded, or None to record one."""
    world = distributed.world_size()
    label = _devices_label(device, world)
    if run_id is None:
        run_id = store.create_run(
            kind=hooks.kind, method=cfg.method_name, dataset=cfg.data.dataset,
            config=cfg.to_dict(), seed=cfg.train.seed, backbone=cfg.model.backbone,
            device=label, world_size=world, parent_id=hooks.parent_id,
            sweep_id=hooks.sweep_id, trial_number=hooks.trial_number,
        )
    if hooks.on_start is not None:
        hooks.on_start(run_id)
    run_dir = out_root / str(run_id)
    store.set_run_dir(run_id, run_dir)
    echo(f"run {run_id}: pretrain {cfg.method_name} on {cfg.data.dataset} "
         f"({dataset.pretrain_images.shape[0]} images from {dataset.source}) on "
         f"{label if world == 1 else f'{world} x {label}'}, "
         f"{cfg.train.epochs} epochs, batch {cfg.train.batch_size}")
    _train_and_evaluate(store, run_id, cfg, dataset, device, run_dir, echo, show_progress, hooks)
    return run_id


def _train_and_evaluate(store: Store, run_id: int, cfg: RunConfig, dataset: ImageDataset,
                        device: torch.device, run_dir: Path, echo: Echo, show_progress: bool,
                        hooks: RunHooks, resume_from: dict[str, Any] | None = None) -> None:
    """Train (from scratch or from ``resume_from``), record the outcome, run the protocols."""
    from sslbench.evaluation import EpochMonitor, run_protocols

    with StopSignals() as stop, recording(store, run_id):
        seed_everything(cfg.train.seed)
        method = build_method(cfg, dataset.info.channels)
        run_dir.mkdir(parents=True, exist_ok=True)
        monitor = EpochMonitor(store, run_id, cfg, dataset, method, device, echo)

        def log_epoch(epoch: int, step: int, metrics: dict[str, float]) -> None:
            try:
                metrics = {**metrics, **monitor(epoch)}
            finally:  # a collapse that stops the run still records its epoch
                store.log_metrics(run_id, metrics, step=step, epoch=epoch)
            if hooks.on_epoch is not None:
                hooks.on_epoch(epoch, metrics)

        result = pretrain(cfg, dataset, method, device, run_dir, log_epoch, show_progress,
                          resume_from=resume_from, stop=stop)
        store.add_artifact(run_id, "checkpoint", result.checkpoint)
        store.update_summary(run_id, loss=result.final_loss, img_per_s=result.images_per_s,
                             train_s=result.seconds)
    echo(f"run {run_id}: done in {result.seconds:.0f}s, final loss {result.final_loss:.4f}, "
         f"{result.images_per_s:.0f} img/s")

    run_protocols(store, run_id, cfg, dataset, method, device, echo)


RESUMABLE = ("KILLED", "FAILED")


def resume_pretrain(run_id: int, db: str | None, *, data_dir: str | None = None,
                    gpus: int | None = None, echo: Echo = print,
                    show_progress: bool = True) -> int:
    """Continue a KILLED or FAILED pretrain run from its last checkpoint, in the same row, then
    run its evaluation protocols; returns the run id.

    The run becomes RUNNING again (``resumes`` + 1); metric rows of epochs after the checkpoint
    are replaced. Everything is checked before the row is touched.
    """
    from sslbench.config import config_from_dict

    with Store.open(db, create=False) as store:
        run = store.get_run(run_id)
        if run.kind != "pretrain":
            hint = ("`sslbench sweep` re-runs failed trials" if run.kind == "trial"
                    else "resume takes a pretrain run id")
            raise UserError(f"run {run_id} is a {run.kind} run; {hint}")
        if run.status not in RESUMABLE:
            raise UserError(f"run {run_id} is {run.status}; only a KILLED or FAILED run can be "
                            "resumed")
        checkpoint = Path(run.run_dir or "") / CHECKPOINT_NAME
        if run.run_dir is None or not checkpoint.is_file():
            raise UserError(f"run {run_id} has no checkpoint to resume from (it stopped before "
                            "its first epoch ended); start it again with `sslbench pretrain`")
        stored = dict(run.config)
        if data_dir is not None:
            stored["data"] = {**stored["data"], "data_dir": data_dir}
        cfg = config_from_dict(stored)
        device = resolve_device(gpus if gpus is not None else cfg.train.gpus)
        state = load_checkpoint(checkpoint)
        check_resumable(state, checkpoint)
        dataset = load_dataset(cfg.data.dataset, cfg.data.data_dir, download=cfg.data.download,
                               seed=cfg.train.seed, class_list=cfg.data.class_list,
                               image_size=cfg.data.image_size)
        at = position_of(state)
        store.resume_run(run_id, epochs_done=at.epochs_done)
        echo(f"run {run_id}: resume {cfg.method_name} on {cfg.data.dataset} at epoch "
             f"{at.epochs_done + 1}/{cfg.train.epochs} (step {at.step}) on {device}")
        _train_and_evaluate(store, run_id, cfg, dataset, device, checkpoint.parent, echo,
                            show_progress, RunHooks(), resume_from=state)
        return run_id


def run_linear_eval(run_id: int, db: str | None, *, linear: dict[str, Any],
                    data_dir: str | None = None, gpus: int | None = None,
                    echo: Echo = print) -> int:
    """Re-evaluate the encoder of a finished pretrain run from its checkpoint (linear probe)."""
    from sslbench.evaluation import evaluate_run

    overrides = {f"eval.linear.{key}": value for key, value in linear.items()}
    return evaluate_run(run_id, db, "linear", overrides=overrides, data_dir=data_dir, gpus=gpus,
                        echo=echo)
