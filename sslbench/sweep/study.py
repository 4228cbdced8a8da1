"""The Optuna side of a sweep: storage, sampler, pruner, trial budget and crash recovery.

Storage: on one machine, Optuna's journal file next to the results DB (Optuna advises against
SQLite for concurrent workers); across machines, one PostgreSQL URL (``--storage``) that holds the
study, and usually sslbench's own tables too (``--db`` the same URL).

Budget: a study is finished when ``trials`` trials are COMPLETE or PRUNED. Trials that FAILED
(a NaN loss, a worker killed mid-trial) do not count, so they are re-run. Local workers take the
next trial under a file lock, so two workers never overshoot the budget; workers on different
machines may overshoot by at most one trial each (documented, not hidden).

Recovery: a trial left RUNNING by a dead worker (its process is gone on this host, or its run's
heartbeat in sslbench's store is stale) is marked FAIL in Optuna and FAILED in the store (also when
opening the store has already marked that run KILLED), and its parameters are queued again, so the
study finishes with no trial lost or counted twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from sslbench.errors import UserError
from sslbench.escape import redact
from sslbench.store import STALE_HEARTBEAT_S, Store
from sslbench.store.api import process_alive
from sslbench.sweep.space import Param, SearchSpace, active

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
optuna.logging.set_verbosity(optuna.logging.WARNING)


def journal_path_for(db_url: str) -> Path:
    """The journal file beside a SQLite results DB (``results.sqlite`` → ``results.optuna.log``)."""
    if db_url.startswith("sqlite:///"):
        db_file = Path(db_url.removeprefix("sqlite:///"))
        return db_file.with_name(db_file.stem + ".optuna.log")
    return Path("sslbench.optuna.log").resolve()


def open_storage(storage: str | None, db_url: str, *, read: bool = False
                 ) -> tuple[optuna.storages.BaseStorage, Path]:
    """The Optuna storage and the lock file that serialises local workers. ``read``: for the
    commands that only look, a journal file that does not exist is an error, never created."""
    if storage is None or not storage.startswith(("postgresql", "mysql", "sqlite")):
        path = Path(storage) if storage else journal_path_for(db_url)
        from optuna.storages.journal import JournalFileBackend

        check_journal(path)
        if read and not path.exists():
            raise UserError(f"no sweep journal at {str(path)!r} (no study yet, or pass "
                            "--storage with the study's journal)")
        backend = JournalFileBackend(str(path))
        # Not "<journal>.lock": Optuna's own journal lock uses that name.
        return optuna.storages.JournalStorage(backend), path.with_name(path.name + ".workers.lock")
    shown = redact(storage)
    try:
        rdb = optuna.storages.RDBStorage(storage, engine_kwargs={"pool_pre_ping": True})
    except Exception as exc:  # bad URL, server down, driver missing
        reason = redact(" ".join(str(exc).split())[:200])
        raise UserError(f"--storage {shown!r}: cannot open ({reason})") from None
    lock = Path(os.environ.get("TMPDIR", "/tmp")) / f"sslbench-sweep-{abs(hash(storage))}.lock"
    return rdb, lock


def check_journal(path: Path) -> int:
    """A journal file Optuna can read, or a UserError; the bytes of a torn last record removed.

    A process killed while appending leaves a last line without its newline; the next append
    would glue a record to it and make the whole study unreadable. Under Optuna's journal lock,
    such a tail is cut off (when the lines before it are journal records, or it starts like
    one), so the study reads as it was before the torn write.
    """
    if path.is_dir():
        raise UserError(f"--storage {str(path)!r} is a folder; pass a journal file path")
    if not path.parent.is_dir():
        raise UserError(f"--storage {str(path)!r}: folder {str(path.parent)!r} does not exist")
    if not path.exists():
        return 0
    from optuna.storages.journal import JournalFileSymlinkLock

    writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)
    lock = JournalFileSymlinkLock(str(path)) if writable else None  # read-only: nothing to cut
    if lock is not None:
        lock.acquire()
    try:
        data = path.read_bytes()
        complete = data[:data.rfind(b"\n") + 1]
        for number, line in enumerate(complete.splitlines(), 1):
            if not _journal_record(line):
                raise UserError(f"--storage {str(path)!r} is not an Optuna journal (line {number} "
                                "is not a journal record); pass another file")
        torn = data[len(complete):]
        if torn and not (complete or torn.startswith(b'{"op_code"')):
            raise UserError(f"--storage {str(path)!r} is not an Optuna journal; pass another file")
        if torn and lock is not None:
            with path.open("r+b") as file:
                file.truncate(len(complete))
        return len(torn)
    finally:
        if lock is not None:
            lock.release()


def _journal_record(line: bytes) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and "op_code" in record


def make_study(name: str, space: SearchSpace, storage: optuna.storages.BaseStorage,
               worker_index: int = 0) -> optuna.Study:
    """Create the study, or load it when it exists (re-running a command resumes it).

    Each local worker seeds its sampler differently (``seed + worker index``): with one seed
    the workers would all draw the same first random trials; a resumed study adds the number of
    trials it holds, or its first new trials would repeat the first session's.
    """
    pruner = make_pruner(space)
    study = optuna.create_study(study_name=name, storage=storage, sampler=_sampler(space, 0),
                                pruner=pruner, direction="maximize", load_if_exists=True)
    # A resumed study must not replay the random start-up draws of the first session: the seed
    # also counts the trials already there (and the worker, so parallel workers differ).
    study.sampler = _sampler(space, worker_index + 1000 * len(study.get_trials(deepcopy=False)))
    attrs = study.user_attrs
    if "method" in attrs and attrs["method"] != space.method:
        raise UserError(f"study {name!r} belongs to method {attrs['method']!r}; choose another "
                        "--study name")
    if "method" not in attrs:
        study.set_user_attr("method", space.method)
        study.set_user_attr("objective", space.objective)
        study.set_user_attr("space", space.source)
    if attrs.get("trials") != space.trials:  # the latest command's --trials is the budget
        study.set_user_attr("trials", space.trials)
    return study


def _sampler(space: SearchSpace, offset: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=space.seed + offset, multivariate=True,
                                      constant_liar=True,
                                      n_startup_trials=min(5, max(1, space.trials // 3)))


def make_pruner(space: SearchSpace) -> optuna.pruners.BasePruner:
    spec = space.pruner
    if spec.name == "none":
        return optuna.pruners.NopPruner()
    if spec.name == "hyperband":
        epochs = int(space.fixed.get("train.epochs", 10))
        return optuna.pruners.HyperbandPruner(min_resource=max(1, spec.warmup_epochs),
                                              max_resource=max(2, epochs))
    return optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials,
                                       n_warmup_steps=spec.warmup_epochs)


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """The trial's parameter values (conditional ones only when their condition holds)."""
    values: dict[str, Any] = dict(space.fixed)
    chosen: dict[str, Any] = {}
    for p in space.params:
        if not active(p, values):
            continue
        chosen[p.key] = values[p.key] = _suggest_one(trial, p)
    return chosen


def _suggest_one(trial: optuna.Trial, p: Param) -> Any:
    if p.type == "categorical":
        return trial.suggest_categorical(p.key, list(p.choices))
    assert p.low is not None and p.high is not None
    if p.type == "int":
        return trial.suggest_int(p.key, int(p.low), int(p.high), step=int(p.step or 1),
                                 log=p.log)
    return trial.suggest_float(p.key, p.low, p.high, step=p.step, log=p.log)


def counted(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=COUNTED))


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock between the workers of this machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def next_trial(study: optuna.Study, budget: int, lock: Path) -> optuna.Trial | None:
    """Ask for a trial unless the budget (COMPLETE + PRUNED + RUNNING) is already used."""
    with locked(lock):
        in_use = len(study.get_trials(deepcopy=False,
                                      states=(*COUNTED, TrialState.RUNNING)))
        if in_use >= budget:
            return None
        trial = study.ask()
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        return trial


def recover_dead_trials(study: optuna.Study, store: Store, lock: Path,
                        stale_s: float = STALE_HEARTBEAT_S) -> list[int]:
    """Fail the trials whose worker died and queue their parameters again; their numbers."""
    recovered = []
    host = socket.gethostname()
    with locked(lock):
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            run_id = t.user_attrs.get("run_id")
            run = store.get_run(int(run_id)) if run_id is not None else None
            if t.user_attrs.get("host") == host:
                dead = not process_alive(int(t.user_attrs.get("pid", -1)))
            else:
                beat = (run.heartbeat_at or run.started_at) if run is not None else t.datetime_start
                dead = beat is None or (datetime.now(UTC) - _aware(beat)).total_seconds() > stale_s
            if not dead:
                continue
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            # Opening the store may have marked the run KILLED already (its process is gone):
            # the sweep owns its trials, so it becomes FAILED like any trial that is retried.
            if run is not None and run.status in ("RUNNING", "KILLED"):
                lost = f": {run.failure_reason}" if run.status == "KILLED" else ""
                store.reap_run(run.id, "FAILED", f"worker died (trial {t.number}{lost}); retried",
                               from_statuses=(run.status,), claim=store.claim_of(run.id))
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number},
                                skip_if_exists=False)
            recovered.append(t.number)
    return recovered


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
