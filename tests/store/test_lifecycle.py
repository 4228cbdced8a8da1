"""Run lifecycle in the store: heartbeats, lost runs marked KILLED on open, resuming a row, and
several processes writing to one SQLite file at once."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from sslbench.store import Store
from sslbench.store.api import format_utc, utc_now
from sslbench.store.models import Run


def _running(store: Store, host: str | None = None) -> int:
    provenance = {"host": host or socket.gethostname()}
    return store.create_run(kind="pretrain", method="byol", dataset="synthetic", config={},
                            seed=0, provenance=provenance)


def _set(store: Store, run_id: int, **values: object) -> None:
    with store.bulk_session() as session:
        session.execute(update(Run).where(Run.id == run_id).values(**values))
        session.commit()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_run_records_its_process_and_is_alive(store: Store) -> None:
    import os

    run_id = _running(store)
    run = store.get_run(run_id)
    assert (run.pid, run.resumes) == (os.getpid(), 0)
    assert store.mark_lost_runs() == []  # this process is alive


@pytest.mark.multiprocess
def test_opening_the_store_marks_runs_with_a_dead_process_killed(db_path: Path) -> None:
    with Store.open(str(db_path)) as store:
        dead, alive = _running(store), _running(store)
        _set(store, dead, pid=_dead_pid())
        beat = store.get_run(dead).heartbeat_at
    with Store.open(str(db_path), create=False) as store:  # any command does this
        run = store.get_run(dead)
        assert run.status == "KILLED"
        assert run.failure_reason is not None and "died" in run.failure_reason
        assert f"last heartbeat {format_utc(beat)}" in run.failure_reason
        assert run.ended_at == beat  # last seen alive
        assert store.get_run(alive).status == "RUNNING"


def test_a_stale_heartbeat_from_another_host_is_killed(store: Store) -> None:
    fresh, stale = _running(store, "node-7"), _running(store, "node-8")
    old = utc_now() - timedelta(minutes=12)
    _set(store, stale, heartbeat_at=old)
    assert store.mark_lost_runs() == [stale]
    run = store.get_run(stale)
    assert run.status == "KILLED" and format_utc(old) in (run.failure_reason or "")
    assert store.get_run(fresh).status == "RUNNING"  # a process elsewhere, beating
    assert store.mark_lost_runs() == []


@pytest.mark.multiprocess
def test_heartbeat_thread_keeps_a_run_fresh(store: Store) -> None:
    run_id = _running(store)
    first = store.get_run(run_id).heartbeat_at
    with store.beating(run_id, every_s=0.05):
        time.sleep(0.3)
    beat = store.get_run(run_id).heartbeat_at
    assert first is not None and beat is not None and beat > first
    time.sleep(0.1)
    assert store.get_run(run_id).heartbeat_at == beat  # the thread stopped with the block


def test_resume_makes_the_same_row_running_and_drops_later_epochs(store: Store) -> None:
    run_id = _running(store)
    for epoch in (1, 2, 3):
        store.log_metrics(run_id, {"loss": 1.0 / epoch}, step=10 * epoch, epoch=epoch)
    store.finish_run(run_id, "KILLED", failure_reason="process 1 on h died")
    store.resume_run(run_id, epochs_done=2)
    run = store.get_run(run_id)
    assert (run.status, run.failure_reason, run.ended_at, run.resumes) == (
        "RUNNING", None, None, 1)
    assert [m.epoch for m in run.metrics] == [1, 2]


WRITER = """
import sys, time
from pathlib import Path
from sslbench.store import Store
while not Path(sys.argv[2]).exists():  # all four start writing together
    time.sleep(0.01)
with Store.open(sys.argv[1]) as store:
    run = store.create_run(kind="bench", method="simclr", dataset="synthetic", config={}, seed=0,
                           provenance={"host": "h"})
    for i in range(50):
        store.log_metrics(run, {"value": float(i)}, step=i)
    store.finish_run(run, "COMPLETED")
"""


@pytest.mark.multiprocess
def test_four_processes_writing_at_once_lose_nothing(db_path: Path, repo: Path) -> None:
    # a new file: the four also race to create the schema
    go = db_path.with_name("go")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db_path), str(go)], cwd=repo,
                              env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"},
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    time.sleep(1.0)  # let them import
    go.touch()
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    assert not any("locked" in e for e in errors)
    with Store.open(str(db_path), create=False) as store:
        runs = store.list_runs()
        assert len(runs) == 4 and {r.status for r in runs} == {"COMPLETED"}
        for run in runs:
            assert [m.value for m in store.get_run(run.id).metrics] == [float(i) for i in range(50)]
