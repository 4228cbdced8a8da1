"""Running a sweep: each worker process takes trials until the study's budget is used.

A trial is an ordinary sslbench run of kind ``trial`` (with the sweep id and trial number), so
`sslbench runs list` and `sslbench report --sweep` see it like any other run. Its per-epoch online
kNN accuracy is reported to Optuna for pruning; its objective (final kNN or linear-probe top-1) is
measured by the evaluation child run, as for ``sslbench pretrain``. Both are scored on the
validation split (``eval.split=val``, see :mod:`sslbench.data.splits`): the test labels cannot
change a sampled value, a pruned trial or the best one.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from typing import Any

from sslbench.errors import RunFailure, RunKilled, RunPruned, UserError
from sslbench.process import become_worker, forwarding_signals
from sslbench.sweep.space import SearchSpace


@dataclass(frozen=True)
class SweepJob:
    """Everything a worker process needs (picklable)."""

    study: str
    space: SearchSpace
    db: str | None
    storage: str | None
    overrides: tuple[str, ...] = ()  # extra key=value for every trial (e.g. data.data_dir)
    quiet: bool = True


def trial_config(space: SearchSpace, params: dict[str, Any], overrides: tuple[str, ...]) -> Any:
    """The validated RunConfig of one trial: fixed keys, the trial's values, the objective (on the
    validation split)."""
    from sslbench.resolve import resolve_config

    values = {**space.fixed, **params, "eval.protocols": [space.objective], "eval.split": "val"}
    return resolve_config(space.method, flags=values, overrides=list(overrides),
                          recipe=space.recipe)


def baseline_params(space: SearchSpace, overrides: tuple[str, ...] = ()
                    ) -> tuple[dict[str, Any] | None, str]:
    """The searched keys at the method's default values (the recipe's, when the space starts from
    one), or None and the reason when a default lies outside the space (then there is no
    baseline trial to run)."""
    from sslbench.config import flatten
    from sslbench.resolve import resolve_config
    from sslbench.sweep.space import active

    values = {**space.fixed}
    defaults = flatten(resolve_config(space.method, flags=dict(space.fixed),
                                      overrides=list(overrides), recipe=space.recipe).to_dict())
    params: dict[str, Any] = {}
    for p in space.params:
        if not active(p, values):
            continue
        value = defaults.get(p.key)
        inside = (value in p.choices if p.type == "categorical" else
                  isinstance(value, int | float) and p.low <= value <= p.high)  # type: ignore[operator]
        if not inside:
            span = (f"{{{', '.join(map(str, p.choices))}}}" if p.type == "categorical"
                    else f"[{p.low:g}, {p.high:g}]")
            return None, f"the default {p.key}={value} lies outside the space {span}"
        params[p.key] = values[p.key] = value
    return params, ""


def enqueue_baseline(study: Any, job: SweepJob) -> str | None:
    """Queue the defaults as the study's first trial (once per study); what was done, to say
    (None when there was nothing to do)."""
    if not job.space.baseline or study.user_attrs.get("baseline_queued"):
        return None
    params, why_not = baseline_params(job.space, job.overrides)
    study.set_user_attr("baseline_queued", True)
    if params is None:
        return f"no baseline trial: {why_not}"
    study.enqueue_trial(params, user_attrs={"baseline": True})
    return "trial 0 runs the defaults (the baseline to beat)"


def check_job(job: SweepJob) -> None:
    """Bad input before anything starts: the space must build a valid config at every bound."""
    probe: dict[str, Any] = {}
    for p in job.space.params:
        probe[p.key] = p.choices[0] if p.type == "categorical" else (
            int(p.low) if p.type == "int" else p.low)  # type: ignore[arg-type]
    trial_config(job.space, probe, job.overrides)
    for p in job.space.params:
        if p.type != "categorical":
            trial_config(job.space, {**probe, p.key: int(p.high) if p.type == "int" else p.high},
                         job.overrides)
        else:
            for choice in p.choices[1:]:
                trial_config(job.space, {**probe, p.key: choice}, job.overrides)


def run_worker(job: SweepJob, worker_index: int = 0) -> int:
    """Take and run trials until the budget is used; the number of trials this worker ran."""
    import optuna

    from sslbench.run.pretrain import RunHooks, run_pretrain
    from sslbench.store import Store
    from sslbench.sweep.study import make_study, next_trial, open_storage, suggest

    store = Store.open(job.db, create=True)
    storage, lock = open_storage(job.storage, store.url)
    study = make_study(job.study, job.space, storage, worker_index)
    objective_key = f"{job.space.objective}_top1"
    done = 0
    try:
        while True:
            trial = next_trial(study, job.space.trials, lock)
            if trial is None:
                return done
            params = suggest(trial, job.space)
            cfg = trial_config(job.space, params, job.overrides)
            started: dict[str, int] = {}
            hooks = RunHooks(kind="trial", sweep_id=job.study, trial_number=trial.number,
                             on_start=_on_start(trial, started), on_epoch=_on_epoch(trial))
            try:
                run_pretrain(cfg, job.db, echo=_echo(job, worker_index), show_progress=False,
                             hooks=hooks)
            except RunPruned:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            except RunFailure:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            except BaseException:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                raise
            else:
                value = objective_of(store, started["run"], objective_key)
                if value is None:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(trial, float(value))
                    store.update_summary(started["run"], objective=float(value))
            done += 1
    finally:
        store.close()


def objective_of(store: Any, run_id: int, key: str) -> float | None:
    """The trial's objective: ``key`` of its newest completed evaluation on the validation
    split (an evaluation on any other split is never one)."""
    done = [c for c in store.children(run_id)
            if c.status == "COMPLETED" and c.config.get("split") == "val" and key in c.summary]
    return float(done[-1].summary[key]) if done else None


def _on_start(trial: Any, started: dict[str, int]) -> Any:
    def on_start(run_id: int) -> None:
        started["run"] = run_id
        trial.set_user_attr("run_id", run_id)

    return on_start


def _on_epoch(trial: Any) -> Any:
    """Report the online kNN accuracy (validation split) of each epoch; stop the run if the
    pruner says so."""

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        value = metrics.get("val_knn_top1")
        if value is None:
            return
        trial.report(value, epoch)
        if trial.should_prune():
            raise RunPruned(f"pruned at epoch {epoch} (online kNN top-1 on val "
                            f"{100 * value:.2f} %)")

    return on_epoch


def _echo(job: SweepJob, index: int) -> Any:
    if job.quiet:
        return lambda _msg: None
    return lambda msg: print(f"[worker {index}] {msg}", flush=True)


def _worker_entry(job: SweepJob, index: int, queue: Any, parent_pid: int) -> None:
    become_worker(parent_pid)
    try:
        queue.put((index, run_worker(job, index), None))
    except UserError as exc:
        queue.put((index, 0, str(exc)))
    except RunKilled as exc:  # its trial's run is KILLED and its Optuna trial FAIL already
        queue.put((index, 0, None))
        raise SystemExit(exc.exit_code) from None


def run_sweep(job: SweepJob, workers: int) -> tuple[int, float]:
    """Run ``workers`` worker processes (1: in this process); (trials run, seconds).

    A SIGINT or SIGTERM to this process is sent on to the workers, which stop their trials
    (KILLED, the Optuna trial failed) and exit; then this process raises ``RunKilled`` with that
    signal. A worker never outlives the sweep: one whose parent is killed outright stops too.
    """
    start = time.perf_counter()
    if workers == 1:
        n = run_worker(job)
        return n, time.perf_counter() - start
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker_entry, args=(job, i, queue, os.getpid()), daemon=False)
             for i in range(workers)]
    with forwarding_signals(lambda: [p.pid for p in procs if p.pid is not None]) as received:
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    if received:
        raise RunKilled(f"study {job.study}: stopped by {received[0].name}, with its "
                        f"{workers} workers; run the same command to finish the study",
                        received[0].value)
    total, errors = 0, []
    while not queue.empty():
        _, n, err = queue.get()
        total += n
        if err:
            errors.append(err)
    if errors:
        raise UserError(errors[0])
    failed = [p.exitcode for p in procs if p.exitcode not in (0, None)]
    if failed:
        raise RunFailure(f"{len(failed)} worker(s) exited with code {failed[0]}; run the same "
                         "command again to resume the sweep")
    return total, time.perf_counter() - start
