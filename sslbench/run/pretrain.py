"""``sslbench pretrain`` and ``sslbench resume``: one experiment end to end.

:func:`run_pretrain` reads top to bottom: load the data once, build the method once, check every
input that could be bad (device, batch, layers, label subsets, database, output folder) before the
store is opened, record the run, train, evaluate. A bad command writes nothing; once the run row
exists, :func:`~sslbench.run.lifecycle.recording` sees that it ends in a final state.
:func:`resume_pretrain` continues a KILLED or FAILED run from its last checkpoint, in the same row.

A distributed run (``--gpus N``, ``--procs N``, several nodes; see :mod:`sslbench.distributed`) is
recorded by the launching process, which then starts the workers: rank 0 trains, logs and
evaluates like a single process, the other ranks only train. If a worker fails, the launcher
marks the run FAILED with that worker's rank and reason. Under ``torchrun``, each process is a
worker and rank 0 records the run.
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslbench.config import RunConfig
from sslbench.config.budget import budget_label
from sslbench.data import ImageDataset, load_run_dataset
from sslbench.distributed import collectives
from sslbench.distributed.launch import (
    LaunchOptions,
    LaunchPlan,
    backend_for,
    init_worker,
    launch,
    launched_worker,
    plan_launch,
    record_failure,
    shutdown,
    worker_device,
)
from sslbench.errors import RunFailure, UserError
from sslbench.methods import build_method
from sslbench.resolve import config_from_dict
from sslbench.run.evaluate import check_protocol_inputs, run_protocols
from sslbench.run.lifecycle import (
    Echo,
    RunContext,
    check_output_dir,
    create_run,
    device_label,
    recording,
)
from sslbench.run.monitor import EpochMonitor
from sslbench.store import Store, resolve_db_url
from sslbench.train.checkpoint import CHECKPOINT_NAME, check_resumable, load_checkpoint, position_of
from sslbench.train.device import resolve_device, seed_everything
from sslbench.train.interrupt import StopSignals
from sslbench.train.loop import pretrain


@dataclasses.dataclass(frozen=True)
class RunHooks:
    """How a caller (a sweep, a reproduction) takes part in a run: the row it becomes and
    per-epoch callbacks.

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
                 launch_options: LaunchOptions | None = None,
                 dataset: ImageDataset | None = None) -> int | None:
    """Pretrain ``cfg.method`` and run ``cfg.eval.protocols`` on it; returns the run id (None on
    the nodes and ranks that do not record the run).

    ``dataset``: already loaded (e.g. a subset, for a reproduction; single process only); else
    loaded from ``cfg``.
    """
    if launched_worker():  # under torchrun: this process is one of the workers
        return _distributed_worker(cfg.to_dict(), db, None, show_progress, False)
    plan = plan_launch(cfg.train.gpus, cfg.train.procs, launch_options or LaunchOptions(),
                       torch.cuda.device_count())
    if plan is not None and hooks is not None:
        raise UserError("a sweep trial runs in one process: drop train.procs / --gpus N")
    if plan is not None and dataset is not None:
        raise UserError("a run on a given (subset) dataset runs in one process: drop "
                        "train.procs / --gpus N")
    device = resolve_device(cfg.train.gpus) if plan is None else worker_device(plan.use_gpus, 0)
    if dataset is None:
        dataset = load_run_dataset(cfg.data, cfg.train.seed)
    _check_batch(cfg, dataset, plan.world_size if plan is not None else 1)
    seed_everything(cfg.train.seed)
    method = build_method(cfg, dataset.info.channels)
    check_protocol_inputs(cfg, dataset, method)
    resolve_db_url(db)  # a bad --db is bad input too: found before the output dir is made
    out_root = check_output_dir(cfg.train.output_dir)
    if plan is not None:
        return _launch_workers(cfg, db, plan, device, echo, show_progress)
    hooks = hooks or RunHooks()
    with Store.open(db, create=True) as store:
        run_id = create_run(store, cfg, hooks.kind, device, parent_id=hooks.parent_id,
                            sweep_id=hooks.sweep_id, trial_number=hooks.trial_number)
        ctx = RunContext(store, run_id, cfg, dataset, device, echo)
        return _start(ctx, method, out_root, show_progress, hooks)


def _check_batch(cfg: RunConfig, dataset: ImageDataset, world: int) -> None:
    n_train = dataset.pretrain_images.shape[0]
    if cfg.train.batch_size > n_train:
        raise UserError(f"train.batch_size={cfg.train.batch_size} is larger than the {n_train} "
                        f"training images of {cfg.data.dataset}; use a smaller --batch-size")
    collectives.check_batch_split(cfg.train.batch_size, world)


def _start(ctx: RunContext, method: nn.Module, out_root: Path, show_progress: bool,
           hooks: RunHooks) -> int:
    """Give the recorded run its folder, say what it is, train and evaluate it."""
    if hooks.on_start is not None:
        hooks.on_start(ctx.run_id)
    run_dir = out_root / str(ctx.run_id)
    ctx.store.set_run_dir(ctx.run_id, run_dir)
    cfg, world = ctx.cfg, collectives.world_size()
    label = device_label(ctx.device, world)
    ctx.echo(f"run {ctx.run_id}: pretrain {cfg.method_name} on {cfg.data.dataset} "
             f"({ctx.dataset.pretrain_images.shape[0]} images from {ctx.dataset.source}) on "
             f"{label if world == 1 else f'{world} x {label}'}, "
             f"{_budget_text(cfg)}, batch {cfg.train.batch_size}")
    _train_and_evaluate(ctx, method, run_dir, show_progress, hooks)
    return ctx.run_id


def _train_and_evaluate(ctx: RunContext, method: nn.Module, run_dir: Path, show_progress: bool,
                        hooks: RunHooks, resume_from: dict[str, Any] | None = None) -> None:
    """Train (from scratch or from ``resume_from``), record the outcome, run the protocols."""
    store, run_id = ctx.store, ctx.run_id
    with StopSignals() as stop, recording(store, run_id):
        run_dir.mkdir(parents=True, exist_ok=True)
        monitor = EpochMonitor(ctx, method)

        def log_epoch(epoch: int, step: int, metrics: dict[str, float]) -> None:
            try:
                metrics = {**metrics, **monitor(epoch)}
            finally:  # a collapse that stops the run still records its epoch
                store.log_metrics(run_id, metrics, step=step, epoch=epoch)
            if hooks.on_epoch is not None:
                hooks.on_epoch(epoch, metrics)

        result = pretrain(ctx.cfg, ctx.dataset, method, ctx.device, run_dir, log_epoch,
                          show_progress, resume_from=resume_from, stop=stop)
        store.add_artifact(run_id, "checkpoint", result.checkpoint)
        train_flops = result.flops_per_image * result.steps * ctx.cfg.train.batch_size
        store.update_summary(run_id, loss=result.final_loss, img_per_s=result.images_per_s,
                             train_s=result.train_s, steps=result.steps, epochs=result.epochs,
                             flops_per_img=result.flops_per_image, train_flops=train_flops)
    ctx.echo(f"run {run_id}: done in {result.seconds:.0f}s ({result.train_s:.0f}s of training "
             f"steps, {result.steps} steps, {train_flops / 1e12:.3g} TFLOP), final loss "
             f"{result.final_loss:.4f}, {result.images_per_s:.0f} img/s")
    run_protocols(ctx, method)


def _budget_text(cfg: RunConfig) -> str:
    label = budget_label(dataclasses.asdict(cfg.train))
    return label if label.endswith("epochs") else f"budget {label}"


# -- distributed runs ------------------------------------------------------------------------


def _launch_workers(cfg: RunConfig, db: str | None, plan: LaunchPlan, device: torch.device,
                    echo: Echo, show_progress: bool) -> int | None:
    """Record the run (on node 0), start this node's workers, wait; a worker's failure marks
    the run FAILED with its rank and reason, unless rank 0 had finished the pretraining (then
    the failure was an evaluation's, recorded on that evaluation's run)."""
    args = (cfg.to_dict(), db, None, show_progress, True)
    if plan.options.node_rank > 0:  # node 0 records the run; this node's ranks never write
        launch(_distributed_worker, args, plan)
        return None
    with Store.open(db, create=True) as store:
        run_id = create_run(store, cfg, "pretrain", device, world=plan.world_size)
        echo(f"run {run_id}: starting {plan.world_size} workers "
             f"({plan.nproc_per_node} per node on {plan.options.nnodes} node(s), "
             f"{backend_for(device)})")
        try:
            launch(_distributed_worker, (*args[:2], run_id, *args[3:]), plan,
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
        device = init_worker(use_gpus)
        # Launched by sslbench, the launcher has fetched the data; under torchrun, each worker may.
        dataset = load_run_dataset(cfg.data, cfg.train.seed,
                                   download=cfg.data.download and not launched_by_sslbench)
        world = collectives.world_size()
        collectives.check_batch_split(cfg.train.batch_size, world)
        seed_everything(cfg.train.seed)
        method = build_method(cfg, dataset.info.channels)
        if collectives.is_main():
            out_root = check_output_dir(cfg.train.output_dir)
            with Store.open(db, create=True) as store:
                if run_id is None:
                    run_id = create_run(store, cfg, "pretrain", device, world=world)
                ctx = RunContext(store, run_id, cfg, dataset, device, print)
                return _start(ctx, method, out_root, show_progress, RunHooks())
        pretrain(cfg, dataset, method, device, Path(cfg.train.output_dir), show_progress=False)
        return None
    except BaseException as exc:
        record_failure(exc)
        if not launched_by_sslbench:
            raise
        if not isinstance(exc, RunFailure | UserError | KeyboardInterrupt):
            traceback.print_exc()
        raise SystemExit(1) from None  # the reason is in the launcher's error file
    finally:
        shutdown()


# -- resuming ----------------------------------------------------------------------------------

RESUMABLE = ("KILLED", "FAILED")


def resume_pretrain(run_id: int, db: str | None, *, data_dir: str | None = None,
                    gpus: int | None = None, echo: Echo = print,
                    show_progress: bool = True) -> int:
    """Continue a KILLED or FAILED pretrain run from its last checkpoint, in the same row, then
    run its evaluation protocols; returns the run id.

    The run becomes RUNNING again (``resumes`` + 1); metric rows of epochs after the checkpoint
    are replaced. Everything is checked before the row is touched.
    """
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
        dataset = load_run_dataset(cfg.data, cfg.train.seed)
        seed_everything(cfg.train.seed)
        method = build_method(cfg, dataset.info.channels)
        at = position_of(state)
        store.resume_run(run_id, epochs_done=at.epochs_done)
        echo(f"run {run_id}: resume {cfg.method_name} on {cfg.data.dataset} at epoch "
             f"{at.epochs_done + 1} (step {at.step}) of {_budget_text(cfg)} on {device}")
        ctx = RunContext(store, run_id, cfg, dataset, device, echo)
        _train_and_evaluate(ctx, method, checkpoint.parent, show_progress, RunHooks(),
                            resume_from=state)
        return run_id
