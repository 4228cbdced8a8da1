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

import contextlib
import dataclasses
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslbench import tensorboard
from sslbench.config import RunConfig
from sslbench.config.budget import budget_label
from sslbench.data import ImageDataset, load_run_dataset
from sslbench.data.stream import steps_per_epoch
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
from sslbench.errors import RunFailure, RunKilled, UserError
from sslbench.escape import redact
from sslbench.files import file_sha256
from sslbench.methods import build_method
from sslbench.process import become_worker
from sslbench.resolve import config_from_dict
from sslbench.run.evaluate import check_protocol_inputs, run_protocols
from sslbench.run.lifecycle import (
    CHECKPOINT_ARTIFACT,
    Echo,
    RunContext,
    create_run,
    device_label,
    recording,
    resume_hint,
    runs_root,
)
from sslbench.run.monitor import EpochMonitor
from sslbench.store import RunRecord, Store, resolve_db_url
from sslbench.store.db import check_writable
from sslbench.store.files import apply_removal, plan_removal
from sslbench.train import contention
from sslbench.train.checkpoint import (
    check_fits,
    check_resumable,
    load_checkpoint,
    load_method_state,
    position_of,
)
from sslbench.train.device import resolve_device, seed_everything
from sslbench.train.interrupt import StopSignals
from sslbench.train.loop import optimization, pretrain
from sslbench.train.retention import CheckpointKeeper


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
        return _distributed_worker(cfg.to_dict(), db, None, show_progress, None)
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
    # a bad or read-only --db is bad input too: found before the output dir is made
    url = resolve_db_url(db)
    check_writable(url)
    _check_tensorboard(cfg)
    root = runs_root(cfg.train.output_dir, url)
    if plan is not None:
        return _launch_workers(cfg, db, plan, device, echo, show_progress, root)
    hooks = hooks or RunHooks()
    # From here a signal stops the run cleanly: KILLED with what continues it, 128 + signal.
    with StopSignals() as stop, Store.open(db, create=True) as store:
        run_id = create_run(store, cfg, hooks.kind, device, parent_id=hooks.parent_id,
                            sweep_id=hooks.sweep_id, trial_number=hooks.trial_number,
                            runs_root=root)
        ctx = RunContext(store, run_id, cfg, dataset, device, echo)
        return _start(ctx, method, show_progress, hooks, stop)


def _check_tensorboard(cfg: RunConfig) -> None:
    if cfg.train.tensorboard is not None:
        tensorboard.check_folder(cfg.train.tensorboard)


def _check_batch(cfg: RunConfig, dataset: ImageDataset, world: int) -> None:
    n_train = dataset.pretrain_images.shape[0]
    if cfg.train.batch_size > n_train:
        raise UserError(f"train.batch_size={cfg.train.batch_size} is larger than the {n_train} "
                        f"training images of {cfg.data.dataset}; use a smaller --batch-size")
    collectives.check_batch_split(cfg.train.batch_size, world)
    if dataset.shards is not None:  # streamed: each rank fills its batches from its own shards
        manifest = dataset.shards.manifest
        steps_per_epoch(manifest, manifest.pretrain_split, world, cfg.train.batch_size // world)


def _start(ctx: RunContext, method: nn.Module, show_progress: bool, hooks: RunHooks,
           stop: StopSignals, resume_from: dict[str, Any] | None = None) -> int:
    """Say what the recorded run is, train and evaluate it in its folder."""
    if hooks.on_start is not None:
        hooks.on_start(ctx.run_id)
    cfg, world = ctx.cfg, collectives.world_size()
    label = device_label(ctx.device, world)
    ctx.echo(f"run {ctx.run_id}: pretrain {cfg.method_name} on {cfg.data.dataset} "
             f"({ctx.dataset.pretrain_images.shape[0]} images from {ctx.dataset.source}) on "
             f"{label if world == 1 else f'{world} x {label}'}, "
             f"{_budget_text(cfg)}, batch {cfg.train.batch_size}")
    _train_and_evaluate(ctx, method, show_progress, hooks, stop, resume_from)
    return ctx.run_id


def _train_and_evaluate(ctx: RunContext, method: nn.Module, show_progress: bool,
                        hooks: RunHooks, stop: StopSignals,
                        resume_from: dict[str, Any] | None = None) -> None:
    """Train (from scratch or from ``resume_from``), record the outcome, run the protocols.
    Checkpoints go to the run's folder, each recorded in its row before it counts."""
    store, run_id = ctx.store, ctx.run_id
    done = store.get_run(run_id).metrics if resume_from is not None else []
    keeper = CheckpointKeeper(ctx.cfg.train.keep_checkpoints,
                              [(m.epoch, m.value) for m in done
                               if m.key == "loss" and m.epoch is not None])
    with recording(store, run_id), _live_curves(ctx) as curves:
        run_dir = Path(store.get_run(run_id).run_dir or "")
        run_dir.mkdir(parents=True, exist_ok=True)
        monitor = EpochMonitor(ctx, method)

        def log_epoch(epoch: int, step: int, metrics: dict[str, float]) -> None:
            try:
                metrics = {**metrics, **monitor(epoch)}
            finally:  # a collapse that stops the run still records its epoch
                store.log_metrics(run_id, metrics, step=step, epoch=epoch)
                if curves is not None:
                    curves.add(metrics, step)
            if hooks.on_epoch is not None:
                hooks.on_epoch(epoch, metrics)

        root = contention.tree_root(collectives.world_size())
        before = contention.sample(root)
        result = pretrain(ctx.cfg, ctx.dataset, method, ctx.device, run_dir, log_epoch,
                          show_progress, resume_from=resume_from, stop=stop,
                          owner=ctx.checkpoint_owner(), on_checkpoint=keeper)
        others = contention.others_cores(before, contention.sample(root))
        _keep_checkpoints(ctx, method, keeper, result.checkpoint)
        train_flops = result.flops_per_image * result.steps * ctx.cfg.train.batch_size
        shared = {} if others is None else {"others_cpu": round(others, 2)}
        if ctx.device.type == "cpu":  # what a wall-clock budget bought depends on it
            shared["cpu_threads"] = torch.get_num_threads()
        store.update_summary(run_id, loss=result.final_loss, img_per_s=result.images_per_s,
                             train_s=result.train_s, steps=result.steps, epochs=result.epochs,
                             flops_per_img=result.flops_per_image, train_flops=train_flops,
                             **shared)
    ctx.echo(f"run {run_id}: done in {result.seconds:.0f}s ({result.train_s:.0f}s of training "
             f"steps, {result.steps} steps, {train_flops / 1e12:.3g} TFLOP), final loss "
             f"{result.final_loss:.4f}, {result.images_per_s:.0f} img/s")
    if others is not None and others >= contention.SHARED_CORES:
        ctx.echo(f"run {run_id}: other processes kept {others:.1f} CPU core(s) busy while it "
                 "trained: its seconds and img/s are not clean measurements"
                 + (" and its wall-clock plan was timed under that load"
                    if ctx.cfg.train.budget_s is not None else ""))
    run_protocols(ctx, method)  # still under ``stop``: a signal ends the evaluation KILLED
    with _live_curves(ctx) as curves:
        if curves is not None:
            curves.add_tagged(tensorboard.evaluation_scalars(store.children(run_id)),
                              result.steps)
    if ctx.cfg.train.keep_checkpoints == "none-after-eval":
        removal = plan_removal(store, strip=[run_id])
        apply_removal(store, removal)
        ctx.echo(f"run {run_id}: evaluated; removed its checkpoint "
                 f"({removal.bytes / 2**20:.1f} MiB, train.keep_checkpoints=none-after-eval)")


def _budget_text(cfg: RunConfig) -> str:
    label = budget_label(dataclasses.asdict(cfg.train))
    return label if label.endswith("epochs") else f"budget {label}"


def _keep_checkpoints(ctx: RunContext, method: nn.Module, keeper: CheckpointKeeper,
                      checkpoint: Path) -> None:
    """Record the checkpoints ``train.keep_checkpoints`` keeps; with ``best``, the method takes
    the best epoch's weights, which its evaluations then evaluate (and the ``checkpoint``
    artifact's checksum becomes the best file's)."""
    for name, path in keeper.finish(checkpoint).items():
        if name == CHECKPOINT_ARTIFACT:
            ctx.store.record_artifact(ctx.run_id, name, path, file_sha256(path),
                                      path.stat().st_size, replace=True)
        else:
            ctx.store.add_artifact(ctx.run_id, name, path)
    if keeper.policy == "best" and keeper.best_epoch is not None:
        load_method_state(method, load_checkpoint(checkpoint)["method"])
        ctx.store.update_summary(ctx.run_id, checkpoint_epoch=keeper.best_epoch)


def _live_curves(ctx: RunContext) -> contextlib.AbstractContextManager[
        tensorboard.ScalarWriter | None]:
    """The run's TensorBoard writer with ``--tensorboard`` (the tags and steps of
    `runs export-tensorboard`), else nothing."""
    cfg = ctx.cfg
    if cfg.train.tensorboard is None:
        return contextlib.nullcontext()
    return tensorboard.ScalarWriter(tensorboard.run_folder(
        cfg.train.tensorboard, ctx.run_id, cfg.method_name, cfg.data.dataset))


# -- distributed runs ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Recorded:
    """What the launcher hands its workers: the run it recorded, the claim by which it holds
    it, and (resuming) the checkpoint to continue from, with its recorded checksum."""

    run_id: int
    claim: str
    checkpoint: tuple[str, str] | None = None  # (path, sha256)


def _launch_workers(cfg: RunConfig, db: str | None, plan: LaunchPlan, device: torch.device,
                    echo: Echo, show_progress: bool, root: Path) -> int | None:
    """Record the run (on node 0), start this node's workers, wait (see :func:`_supervise`)."""
    if plan.options.node_rank > 0:  # node 0 records the run; this node's ranks never write
        launch(_distributed_worker, (cfg.to_dict(), db, None, show_progress, os.getpid()), plan)
        return None
    with Store.open(db, create=True) as store:
        run_id = create_run(store, cfg, "pretrain", device, world=plan.world_size,
                            runs_root=root)
        echo(f"run {run_id}: starting {plan.world_size} workers "
             f"({plan.nproc_per_node} per node on {plan.options.nnodes} node(s), "
             f"{backend_for(device)})")
        _supervise(store, run_id, cfg, db, plan, show_progress)
    return run_id


def _supervise(store: Store, run_id: int, cfg: RunConfig, db: str | None, plan: LaunchPlan,
               show_progress: bool, checkpoint: tuple[str, str] | None = None) -> None:
    """Run the workers of a recorded run, handing rank 0 this process's claim on it. A signal
    to this process reaches the workers once (they stop together; rank 0 records KILLED) and
    ends it with 128 + the signal; a worker's failure marks the run FAILED with its rank and
    reason. Either mark is conditional on the claim: what rank 0 recorded (a COMPLETED
    pretraining whose evaluation failed, a KILLED run with its checkpoint) is kept."""
    recorded = _Recorded(run_id, store.claim_token(run_id) or "", checkpoint)
    try:
        launch(_distributed_worker, (cfg.to_dict(), db, recorded, show_progress, os.getpid()),
               plan, run_name=f"sslbench-run-{run_id}")
    except RunKilled as exc:
        store.finish_run(run_id, "KILLED",
                         failure_reason=f"{exc}; {resume_hint(store, run_id)}")
        raise RunKilled(f"run {run_id}: {exc}", exc.exit_code - 128) from None
    except BaseException as exc:
        store.finish_run(run_id, "FAILED", failure_reason=redact(str(exc) or type(exc).__name__))
        if isinstance(exc, RunFailure):
            raise RunFailure(f"run {run_id}: {exc}") from None
        raise


def _distributed_worker(config: dict[str, Any], db: str | None, recorded: _Recorded | None,
                        show_progress: bool, launcher_pid: int | None) -> int | None:
    """One worker of a distributed run: rank 0 records (the run the launcher recorded, or a new
    one under torchrun) and evaluates as a single process would; the other ranks only train.
    Every rank stops at the same step on a signal (see :func:`~sslbench.train.loop.pretrain`).
    """
    if launcher_pid is not None:
        become_worker(launcher_pid)
    cfg = config_from_dict(config)
    try:
        with StopSignals() as stop:
            use_gpus = cfg.train.procs == 1 and resolve_device(cfg.train.gpus).type == "cuda"
            device = init_worker(use_gpus)
            # Launched by sslbench, the launcher has fetched the data; under torchrun, each may.
            dataset = load_run_dataset(cfg.data, cfg.train.seed,
                                       download=cfg.data.download and launcher_pid is None)
            world = collectives.world_size()
            collectives.check_batch_split(cfg.train.batch_size, world)
            seed_everything(cfg.train.seed)
            method = build_method(cfg, dataset.info.channels)
            state = None
            if recorded is not None and recorded.checkpoint is not None:
                path, sha256 = recorded.checkpoint
                state = load_checkpoint(path, sha256=sha256)
            if not collectives.is_main():
                pretrain(cfg, dataset, method, device, Path(), show_progress=False, stop=stop,
                         resume_from=state)
                return None
            _check_tensorboard(cfg)  # under torchrun, rank 0 is the first to see the config
            with Store.open(db, create=True) as store:
                if recorded is None:
                    run_id = create_run(store, cfg, "pretrain", device, world=world,
                                        runs_root=runs_root(cfg.train.output_dir, store.url))
                else:
                    run_id = recorded.run_id
                    store.hold(run_id, recorded.claim)
                ctx = RunContext(store, run_id, cfg, dataset, device, print)
                return _start(ctx, method, show_progress, RunHooks(), stop, resume_from=state)
    except BaseException as exc:
        record_failure(exc)
        if launcher_pid is None:
            raise
        if not isinstance(exc, RunFailure | UserError | RunKilled):
            traceback.print_exc()
        raise SystemExit(exc.exit_code if isinstance(exc, RunKilled) else 1) from None
    finally:
        shutdown()


# -- resuming ----------------------------------------------------------------------------------

RESUMABLE = ("KILLED", "FAILED")


def resume_pretrain(run_id: int, db: str | None, *, data_dir: str | None = None,
                    gpus: int | None = None, echo: Echo = print,
                    show_progress: bool = True) -> int:
    """Continue a KILLED or FAILED pretrain run from its last checkpoint, in the same row, then
    run its evaluation protocols; returns the run id.

    Everything is checked before the row is touched: the checkpoint must be the file the run
    recorded (checksum) and belong to it (uid), and must load into the run's method, optimizer
    and schedule. Then one conditional update claims the run (of two ``resume`` commands, the
    second is refused); it becomes RUNNING again (``resumes`` + 1), and metric rows of epochs
    after the checkpoint are replaced. A distributed run is relaunched at its world size.
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
        recorded = next((a for a in run.artifacts if a.name == CHECKPOINT_ARTIFACT), None)
        if recorded is None:
            raise UserError(f"run {run_id} has no checkpoint to resume from (it stopped before "
                            "its first epoch ended); start it again with `sslbench pretrain`")
        stored = dict(run.config)
        if data_dir is not None:
            stored["data"] = {**stored["data"], "data_dir": data_dir}
        cfg = config_from_dict(stored)
        _check_tensorboard(cfg)
        plan = _resume_plan(run, cfg, gpus)
        device = (resolve_device(gpus if gpus is not None else cfg.train.gpus) if plan is None
                  else worker_device(plan.use_gpus, 0))
        state = load_checkpoint(recorded.path, sha256=recorded.sha256, owner=run.uid)
        check_resumable(state, recorded.path)
        dataset = load_run_dataset(cfg.data, cfg.train.seed)
        seed_everything(cfg.train.seed)
        method = build_method(cfg, dataset.info.channels)
        steps = dataset.pretrain_images.shape[0] // cfg.train.batch_size
        check_fits(state, method, *optimization(cfg, method, steps), recorded.path)
        at = position_of(state)
        with StopSignals() as stop:
            store.resume_run(run_id, epochs_done=at.epochs_done)
            where = str(device) if plan is None else f"{plan.world_size} workers"
            echo(f"run {run_id}: resume {cfg.method_name} on {cfg.data.dataset} at epoch "
                 f"{at.epochs_done + 1} (step {at.step}) of {_budget_text(cfg)} on {where}")
            if plan is not None:
                _supervise(store, run_id, cfg, db, plan, show_progress,
                           checkpoint=(recorded.path, recorded.sha256))
                return run_id
            ctx = RunContext(store, run_id, cfg, dataset, device, echo)
            _train_and_evaluate(ctx, method, show_progress, RunHooks(), stop, resume_from=state)
        return run_id


def _resume_plan(run: RunRecord, cfg: RunConfig, gpus: int | None) -> LaunchPlan | None:
    """The launch that continues ``run`` at the world size it trained with (None: one process),
    or a UserError saying why this machine cannot."""
    if run.world_size == 1:
        if gpus is not None and gpus > 1:
            raise UserError(f"run {run.id} trained in one process; resume it with --gpus 0 or 1")
        return None
    if gpus is not None and gpus != cfg.train.gpus:
        raise UserError(f"run {run.id} trained on {run.world_size} workers ({run.device}); it "
                        "resumes on the same ones: drop --gpus")
    plan = plan_launch(cfg.train.gpus, cfg.train.procs, LaunchOptions(),
                       torch.cuda.device_count())
    if plan is None or plan.world_size != run.world_size:
        raise UserError(f"run {run.id} trained on {run.world_size} workers across nodes; a "
                        "resume starts the workers of one node only: start it again with "
                        "`sslbench pretrain`")
    return plan
