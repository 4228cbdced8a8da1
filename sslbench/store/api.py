"""The store's public API: `Store` writes and reads runs; reads return plain frozen records.

One `Session` per unit of work; no ORM object leaves this module.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import threading
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Engine, delete, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from sslbench.errors import ClaimLost, StoreUnavailable, UserError
from sslbench.files import file_sha256
from sslbench.limits import MAX_ID
from sslbench.provenance import collect_provenance
from sslbench.store.db import display_name, open_engine, resolve_db_url
from sslbench.store.models import (
    FINAL_STATUSES,
    RUN_KINDS,
    RUN_STATUSES,
    Artifact,
    Metric,
    Run,
    new_uid,
)

STALE_HEARTBEAT_S = 300.0  # a RUNNING run silent for longer than this has probably died
HEARTBEAT_EVERY_S = 30.0  # how often a running run says it is alive (10 beats per stale period)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC, as stored."""
    return datetime.now(UTC)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal configs give equal text (and hash)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: dict[str, Any]) -> str:
    """First 16 hex digits of the sha256 of the canonical JSON of `config`."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class MetricRow:
    """One logged value of a metric."""

    key: str
    step: int | None
    epoch: int | None
    value: float
    time: datetime


@dataclass(frozen=True)
class ArtifactRow:
    """One file recorded for a run."""

    name: str
    path: str
    sha256: str
    size_bytes: int
    created_at: datetime


@dataclass(frozen=True)
class RunRecord:
    """A run as read from the store, detached from any database session."""

    id: int
    kind: str
    parent_id: int | None
    sweep_id: str | None
    trial_number: int | None
    method: str
    dataset: str
    backbone: str | None
    status: str
    config: dict[str, Any]
    config_hash: str
    seed: int
    git_commit: str | None
    git_dirty: bool | None
    host: str
    device: str | None
    world_size: int
    versions: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    heartbeat_at: datetime | None
    failure_reason: str | None
    summary: dict[str, Any]
    run_dir: str | None = None
    pid: int | None = None
    resumes: int = 0
    uid: str = ""
    metrics: list[MetricRow] = field(default_factory=list)
    artifacts: list[ArtifactRow] = field(default_factory=list)

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end (to now while still running); None if never started."""
        if self.started_at is None:
            return None
        return ((self.ended_at or utc_now()) - self.started_at).total_seconds()

    @property
    def is_stale(self) -> bool:
        """True for a RUNNING run whose heartbeat is older than `STALE_HEARTBEAT_S`."""
        last = self.heartbeat_at or self.started_at
        return (
            self.status == "RUNNING"
            and last is not None
            and (utc_now() - last).total_seconds() > STALE_HEARTBEAT_S
        )

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data: datetimes as ISO 8601 strings, NaN and inf as None."""
        return _jsonable(asdict(self)) | {"duration_s": self.duration_s}


class Store:
    """The run database: one engine, one short session per call.

    A process *holds* the runs it created RUNNING, started or resumed (their claim token is kept
    here). Every write to a run is conditional on its claim: a process writes only to runs it
    holds, or that no one holds; once another process has reaped or resumed a run, the old
    holder's next write raises :class:`~sslbench.errors.ClaimLost` and changes nothing.
    """

    def __init__(self, url: str, engine: Engine, *, read_only: bool = False) -> None:
        self.url = url
        self.read_only = read_only
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._claims: dict[int, str] = {}

    @classmethod
    def open(cls, db: str | None = None, *, create: bool = True, read: bool = False) -> Store:
        """Open the store named by a `--db` value (see `resolve_db_url`), migrating it if needed,
        and mark the runs whose process has died KILLED (see `mark_lost_runs`).

        With `create=False` a missing SQLite file is a `UserError` rather than a new database.
        `read=True` (commands that only read): a SQLite database that cannot be written (a
        read-only file or folder) is read from a snapshot, migrated in memory if it is older
        than this sslbench, and never written; without it, such a database is a `UserError`.
        """
        url = resolve_db_url(db)
        engine, read_only = open_engine(url, create=create, read=read)
        store = cls(url, engine, read_only=read_only)
        if read_only:
            return store
        try:
            store.mark_lost_runs()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- claims -------------------------------------------------------------------------------

    def claim_token(self, run_id: int) -> str | None:
        """The token by which this process holds ``run_id`` (None: it does not hold it); a
        launcher hands it to the worker that records the run (:meth:`hold`)."""
        return self._claims.get(run_id)

    def hold(self, run_id: int, token: str) -> None:
        """Write to ``run_id`` with a claim taken by another process of the same run (the
        launcher of a distributed run hands its claim to rank 0)."""
        self._claims[run_id] = token

    def _mine(self, run_id: int) -> ColumnElement[bool]:
        """The condition of every write: the run is held by this process, or by no one."""
        return Run.claim.is_not_distinct_from(self._claims.get(run_id))

    def _claimed_update(self, session: Session, run_id: int, **values: Any) -> None:
        """UPDATE the run if this process may write it; else ClaimLost (or no such run)."""
        done = session.execute(update(Run).where(Run.id == run_id, self._mine(run_id))
                               .values(**values)).rowcount
        if not done:
            run = self._run(session, run_id)
            self._claims.pop(run_id, None)
            raise ClaimLost(f"run {run_id} is no longer held by this process (now {run.status}"
                            f"{f', pid {run.pid} on {run.host}' if run.status == 'RUNNING' else ''}"
                            "); stopping without writing to it")

    # -- writing ------------------------------------------------------------------------------

    def create_run(
        self,
        *,
        kind: str,
        method: str,
        dataset: str,
        config: dict[str, Any],
        seed: int,
        backbone: str | None = None,
        parent_id: int | None = None,
        sweep_id: str | None = None,
        trial_number: int | None = None,
        status: str = "RUNNING",
        device: str | None = None,
        world_size: int = 1,
        provenance: dict[str, Any] | None = None,
        runs_root: str | Path | None = None,
    ) -> int:
        """Record a new run and return its id.

        `provenance` has the keys of `collect_provenance()`, which is called when it is None.
        A RUNNING run gets its start and heartbeat times now and is held by this process; a
        QUEUED one on `start_run`. With `runs_root`, the run's folder is `runs_root/<its uid>`.
        """
        _check_choice("kind", kind, RUN_KINDS)
        _check_choice("status", status, RUN_STATUSES)
        if provenance is None:
            provenance = collect_provenance()
        now = utc_now()
        started = now if status == "RUNNING" else None
        host = provenance.get("host") or socket.gethostname()
        uid, claim = new_uid(), new_uid() if started else None
        run = Run(
            kind=kind,
            parent_id=parent_id,
            sweep_id=sweep_id,
            trial_number=trial_number,
            method=method,
            dataset=dataset,
            backbone=backbone,
            status=status,
            config_json=canonical_json(config),
            config_hash=config_hash(config),
            seed=seed,
            git_commit=provenance.get("git_commit"),
            git_dirty=provenance.get("git_dirty"),
            host=host,
            pid=os.getpid() if started and host == socket.gethostname() else None,
            device=device,
            world_size=world_size,
            versions_json=canonical_json(provenance.get("versions") or {}),
            created_at=now,
            started_at=started,
            heartbeat_at=started,
            uid=uid,
            claim=claim,
            run_dir=None if runs_root is None else str(Path(runs_root).absolute() / uid),
        )
        with self._unit_of_work() as session:
            session.add(run)
            session.flush()
            run_id = run.id
        if claim is not None:
            self._claims[run_id] = claim
        return run_id

    def start_run(self, run_id: int) -> None:
        """Take a QUEUED run: RUNNING in this process, with its start and heartbeat times."""
        now, token = utc_now(), new_uid()
        self._claim(run_id, ("QUEUED",), token, status="RUNNING", started_at=now,
                    heartbeat_at=now)

    def set_run_dir(self, run_id: int, run_dir: str | Path) -> None:
        """Record the folder (made absolute) that holds the run's checkpoints."""
        with self._unit_of_work() as session:
            self._claimed_update(session, run_id, run_dir=str(Path(run_dir).absolute()))

    def resume_run(self, run_id: int, *, epochs_done: int,
                   from_statuses: tuple[str, ...] = ("KILLED", "FAILED")) -> None:
        """Take a KILLED or FAILED run: RUNNING again in this process, from a checkpoint taken
        after `epochs_done` epochs. The metric rows of later epochs (logged before the process
        died but not in the checkpoint) are removed, as the resumed run logs them again.
        (A reproduction, whose finished cells are skipped, takes a COMPLETED one up again too.)

        One conditional update: of two processes resuming one run, the second gets a
        `UserError` (the run is RUNNING) and has changed nothing.
        """
        now, token = utc_now(), new_uid()
        with self._unit_of_work() as session:
            self._claim(run_id, from_statuses, token, session=session,
                        status="RUNNING", failure_reason=None, ended_at=None, heartbeat_at=now,
                        resumes=Run.resumes + 1)
            session.execute(
                delete(Metric).where(Metric.run_id == run_id, Metric.epoch > epochs_done)
            )

    def _claim(self, run_id: int, from_statuses: tuple[str, ...], token: str, *,
               session: Session | None = None, **values: Any) -> None:
        """Hold ``run_id`` with ``token`` if its status is one of ``from_statuses``."""
        with ExitStack() as stack:
            if session is None:
                session = stack.enter_context(self._unit_of_work())
            taken = session.execute(
                update(Run).where(Run.id == run_id, Run.status.in_(from_statuses))
                .values(claim=token, host=socket.gethostname(), pid=os.getpid(), **values)
            ).rowcount
            if not taken:
                run = self._run(session, run_id)
                held = (f" (held by process {run.pid} on {run.host})"
                        if run.status == "RUNNING" else "")
                raise UserError(f"run {run_id} is {run.status}{held}; only a "
                                f"{' or '.join(from_statuses)} run can be taken")
        self._claims[run_id] = token

    def log_metrics(
        self,
        run_id: int,
        metrics: dict[str, float],
        *,
        step: int | None = None,
        epoch: int | None = None,
    ) -> None:
        """Append one row per metric at this step/epoch; also counts as a heartbeat."""
        now = utc_now()
        with self._unit_of_work() as session:
            self._claimed_update(session, run_id, heartbeat_at=now)
            session.add_all(
                Metric(run_id=run_id, key=key, step=step, epoch=epoch, value=float(v), time=now)
                for key, v in metrics.items()
            )

    def heartbeat(self, run_id: int) -> None:
        """Tell readers the run is alive."""
        with self._unit_of_work() as session:
            self._claimed_update(session, run_id, heartbeat_at=utc_now())

    @contextmanager
    def beating(self, run_id: int, every_s: float = HEARTBEAT_EVERY_S) -> Iterator[None]:
        """Heartbeats from a background thread while the block runs (training itself never
        writes to the DB between epochs). A failed beat is skipped, never fatal: the next one,
        or the epoch's metrics, will do."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(every_s):
                with suppress(Exception):
                    self.heartbeat(run_id)

        thread = threading.Thread(target=beat, name=f"sslbench-heartbeat-{run_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def mark_lost_runs(self, stale_s: float = STALE_HEARTBEAT_S) -> list[int]:
        """Mark KILLED the RUNNING runs whose process is gone; their ids.

        A run is lost when its process (`pid`) no longer exists on this host, or, from any host,
        when its last heartbeat is older than `stale_s`. The reason names the last heartbeat.
        Reads first and writes only when there is something to mark; each mark is conditional
        on the claim that was seen, so a run resumed meanwhile is left alone.
        """
        host, now = socket.gethostname(), utc_now()
        with self._reading() as session:
            running = session.execute(
                select(Run.id, Run.host, Run.pid, Run.heartbeat_at, Run.started_at, Run.claim)
                .where(Run.status == "RUNNING")
            ).all()
        lost: list[int] = []
        for run_id, run_host, pid, beat, started, claim in running:
            last = beat or started
            since = f"last heartbeat {format_utc(last)}" if last else "no heartbeat"
            if run_host == host and pid is not None and not process_alive(pid):
                reason = f"process {pid} on {host} died ({since})"
            elif last is not None and (now - last).total_seconds() > stale_s:
                reason = f"lost: {since}, over {stale_s:.0f} s ago (process died?)"
            else:
                continue
            if self.reap_run(run_id, "KILLED", reason, from_statuses=("RUNNING",), claim=claim,
                             ended_at=last or now):  # last seen alive
                lost.append(run_id)
        return sorted(lost)

    def reap_run(self, run_id: int, status: str, reason: str, *,
                 from_statuses: tuple[str, ...], claim: str | None,
                 ended_at: datetime | None = None) -> bool:
        """Set the final status of a run another process held (it died): only if the run is
        still in one of ``from_statuses`` with the ``claim`` seen; whether it was."""
        _check_choice("final status", status, FINAL_STATUSES)
        with self._unit_of_work() as session:
            return bool(session.execute(
                update(Run).where(Run.id == run_id, Run.status.in_(from_statuses),
                                  Run.claim.is_not_distinct_from(claim))
                .values(status=status, failure_reason=reason, claim=None,
                        ended_at=ended_at or utc_now())
            ).rowcount)

    def claim_of(self, run_id: int) -> str | None:
        """The claim token a run is held by now (None: no one holds it)."""
        with self._reading() as session:
            return session.scalar(select(Run.claim).where(Run.id == run_id))

    def add_artifact(self, run_id: int, name: str, path: str | Path) -> None:
        """Record a file of the run with its absolute path, sha256 and size."""
        path = Path(path).absolute()
        self.record_artifact(run_id, name, path, file_sha256(path), path.stat().st_size)

    def record_artifact(self, run_id: int, name: str, path: str | Path, sha256: str,
                        size_bytes: int, *, replace: bool = False) -> None:
        """Record a file of the run (its hash computed by the caller); ``replace``: the one
        artifact of that name is updated (a checkpoint rewritten every epoch)."""
        now = utc_now()
        with self._unit_of_work() as session:
            self._claimed_update(session, run_id, heartbeat_at=now)
            if replace:
                session.execute(delete(Artifact).where(Artifact.run_id == run_id,
                                                       Artifact.name == name))
            session.add(Artifact(run_id=run_id, name=name, path=str(Path(path).absolute()),
                                 sha256=sha256, size_bytes=size_bytes, created_at=now))

    def update_summary(self, run_id: int, **values: float) -> None:
        """Merge headline metrics (e.g. `linear_top1=0.87`) into the run's summary."""
        with self._unit_of_work() as session:
            run = self._run(session, run_id)
            summary = json.loads(run.summary_json) if run.summary_json else {}
            summary.update({key: float(value) for key, value in values.items()})
            self._claimed_update(session, run_id, summary_json=canonical_json(summary))

    def finish_run(self, run_id: int, status: str, *, failure_reason: str | None = None) -> bool:
        """Set the final status (COMPLETED, FAILED, KILLED or PRUNED) and the end time, and
        release the run; False (and nothing changed) if this process no longer holds it."""
        _check_choice("final status", status, FINAL_STATUSES)
        now = utc_now()
        try:
            with self._unit_of_work() as session:
                self._claimed_update(session, run_id, status=status,
                                     failure_reason=failure_reason, ended_at=now,
                                     heartbeat_at=now, claim=None)
        except ClaimLost:
            return False
        self._claims.pop(run_id, None)
        return True

    def remove_runs(self, deleted: Collection[int], stripped: Collection[int] = ()) -> None:
        """In one transaction: delete the runs ``deleted`` (with their metric and artifact rows)
        and the artifact rows of the runs ``stripped``, whose rows stay with no ``run_dir``. Their
        files are the caller's (see :mod:`sslbench.store.files`).

        Every run must exist and be in a final state when the transaction claims it; otherwise a
        UserError, and nothing changes (a resumed or restarted run is never removed under it).
        """
        ids = set(deleted) | set(stripped)
        with self._unit_of_work() as session:
            claimed = session.execute(
                update(Run).where(Run.id.in_(ids), Run.status.in_(FINAL_STATUSES),
                                  Run.claim.is_(None))  # no process holds it (a resume does)
                .values(run_dir=None).execution_options(synchronize_session=False)
            ).rowcount
            if claimed != len(ids):
                present = {run_id: (status, claim) for run_id, status, claim in session.execute(
                    select(Run.id, Run.status, Run.claim).where(Run.id.in_(ids))).all()}
                raise UserError(_unremovable(sorted(ids), present))
            session.execute(delete(Artifact).where(Artifact.run_id.in_(ids)))
            session.execute(delete(Metric).where(Metric.run_id.in_(deleted)))
            session.execute(update(Run).where(Run.parent_id.in_(deleted), Run.id.not_in(deleted))
                            .values(parent_id=None).execution_options(synchronize_session=False))
            session.execute(delete(Run).where(Run.id.in_(deleted)))

    # -- reading ------------------------------------------------------------------------------

    def get_run(self, run_id: int) -> RunRecord:
        """The run with its metrics (in logging order) and artifacts."""
        with self._reading() as session:
            run = self._run(session, run_id)
            metrics = session.scalars(
                select(Metric).where(Metric.run_id == run_id).order_by(Metric.id)
            )
            artifacts = session.scalars(
                select(Artifact).where(Artifact.run_id == run_id).order_by(Artifact.id)
            )
            return _record(
                run,
                metrics=[MetricRow(m.key, m.step, m.epoch, m.value, m.time) for m in metrics],
                artifacts=[
                    ArtifactRow(a.name, a.path, a.sha256, a.size_bytes, a.created_at)
                    for a in artifacts
                ],
            )

    def list_runs(
        self,
        *,
        kind: str | None = None,
        method: str | None = None,
        dataset: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        sweep_id: str | None = None,
        parent_id: int | None = None,
    ) -> list[RunRecord]:
        """Runs matching every given filter, newest first, without their metric rows."""
        query = select(Run).order_by(Run.id.desc()).limit(limit)
        for column, wanted in (
            (Run.kind, kind),
            (Run.method, method),
            (Run.dataset, dataset),
            (Run.status, status),
            (Run.sweep_id, sweep_id),
            (Run.parent_id, parent_id),
        ):
            if wanted is not None:
                query = query.where(column == wanted)
        with self._reading() as session:
            return [_record(run) for run in session.scalars(query)]

    def children(self, run_id: int) -> list[RunRecord]:
        """The runs whose parent is `run_id` (evaluations of a pretraining run), oldest first."""
        query = select(Run).where(Run.parent_id == run_id).order_by(Run.id)
        with self._reading() as session:
            return [_record(run) for run in session.scalars(query)]

    @contextmanager
    def bulk_session(self) -> Iterator[Session]:
        """A plain session for bulk queries and inserts (the report reads thousands of runs)."""
        with self._reading() as session:
            yield session

    # -- helpers ------------------------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        """A session for queries; a database that cannot be used now is one line."""
        try:
            with self._sessions() as session:
                yield session
        except OperationalError as exc:
            raise StoreUnavailable(f"DB {display_name(self.url)!r}: "
                                   f"{_first_line(exc.orig)}") from None

    @contextmanager
    def _unit_of_work(self) -> Iterator[Session]:
        """A transaction that writes (refused on a read-only snapshot)."""
        if self.read_only:
            raise UserError(f"DB {display_name(self.url)!r} is read-only here; pass --db with a "
                            "writable file to record anything")
        try:
            with self._sessions.begin() as session:
                yield session
        except OperationalError as exc:
            raise StoreUnavailable(f"DB {display_name(self.url)!r}: "
                                   f"{_first_line(exc.orig)}") from None

    @staticmethod
    def _run(session: Session, run_id: int) -> Run:
        if not 0 < run_id <= MAX_ID:
            raise UserError(f"no run with id {run_id} in DB (run ids are 1 … {MAX_ID})")
        run = session.get(Run, run_id)
        if run is None:
            raise UserError(f"no run with id {run_id} in DB")
        return run


def _record(
    run: Run, *, metrics: list[MetricRow] | None = None, artifacts: list[ArtifactRow] | None = None
) -> RunRecord:
    return RunRecord(
        id=run.id,
        kind=run.kind,
        parent_id=run.parent_id,
        sweep_id=run.sweep_id,
        trial_number=run.trial_number,
        method=run.method,
        dataset=run.dataset,
        backbone=run.backbone,
        status=run.status,
        config=json.loads(run.config_json),
        config_hash=run.config_hash,
        seed=run.seed,
        git_commit=run.git_commit,
        git_dirty=run.git_dirty,
        host=run.host,
        device=run.device,
        world_size=run.world_size,
        versions=json.loads(run.versions_json),
        created_at=run.created_at,
        started_at=run.started_at,
        ended_at=run.ended_at,
        heartbeat_at=run.heartbeat_at,
        failure_reason=run.failure_reason,
        summary=json.loads(run.summary_json) if run.summary_json else {},
        run_dir=run.run_dir,
        pid=run.pid,
        resumes=run.resumes or 0,
        uid=run.uid,
        metrics=metrics or [],
        artifacts=artifacts or [],
    )


def format_utc(moment: datetime) -> str:
    """`2026-11-26 02:41:07 UTC`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _unremovable(ids: list[int], present: dict[int, tuple[str, str | None]]) -> str:
    for run_id in ids:
        if run_id not in present:
            return f"no run with id {run_id} in DB"
        status, claim = present[run_id]
        if status not in FINAL_STATUSES or claim is not None:
            return (f"run {run_id} is {status}{' and held by a process' if claim else ''}: "
                    "stop it (or wait until it ends) before removing it")
    raise AssertionError("every run is removable")


def _first_line(error: BaseException | None) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}, not {value!r}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value
