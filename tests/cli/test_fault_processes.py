"""The cases of issue 17 that need real process trees and signals: a distributed run stopped by
SIGTERM (exit 143, KILLED with what continues it, no traceback) and resumed at its world size to
the same losses as an uninterrupted one; a sweep of two workers stopped by SIGTERM, its workers
stopped with it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sslbench.cli import main
from sslbench.store import RunRecord, Store
from sslbench.store.api import process_alive

DISTRIBUTED = ["pretrain", "simclr", "--dataset", "synthetic", "--procs", "2", "--epochs", "4",
               "--eval", "none", "--quiet", "train.batch_size=256", "model.width=8",
               "eval.knn.monitor_every=0", "eval.diagnostics.enabled=false"]


def _env(repo: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    env.pop("SSLBENCH_DB", None)
    return env


def _run(db: Path, run_id: int = 1) -> RunRecord:
    with Store.open(str(db), create=False) as store:
        return store.get_run(run_id)


def _losses(run: RunRecord) -> dict[int | None, float]:
    out: dict[int | None, float] = {}
    for m in run.metrics:
        if m.key in ("loss", "lr"):
            assert (m.key, m.epoch) not in out, f"{m.key} of epoch {m.epoch} logged twice"
            out[m.key, m.epoch] = m.value  # type: ignore[index]
    return out


def _wait_for(condition: object, proc: subprocess.Popen[str], what: str,
              timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert proc.poll() is None, f"exited before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {what} in {timeout:.0f} s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def distributed_reference(tmp_path_factory: pytest.TempPathFactory) -> RunRecord:
    folder = tmp_path_factory.mktemp("reference")
    assert main([*DISTRIBUTED, "--db", str(folder / "r.sqlite")]) == 0
    return _run(folder / "r.sqlite")


@pytest.fixture(scope="module")
def distributed_killed(tmp_path_factory: pytest.TempPathFactory, repo: Path
                       ) -> tuple[Path, int, str]:
    """A --procs 2 run stopped by SIGTERM to its launcher once epoch 1's checkpoint exists:
    the database, the exit code and stderr."""
    folder = tmp_path_factory.mktemp("killed")
    db = folder / "r.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "sslbench", *DISTRIBUTED, "--db", str(db)],
                            cwd=folder, env=_env(repo), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_for(lambda: list(folder.rglob("checkpoint.pt")), proc, "checkpoint")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return db, proc.returncode, err


@pytest.mark.multiprocess
def test_case07_sigterm_to_a_distributed_run_is_exit_143_and_says_what_continues_it(
        distributed_killed: tuple[Path, int, str]) -> None:
    db, code, err = distributed_killed
    assert code == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("killed: run 1: ")
    run = _run(db)
    assert (run.status, run.world_size) == ("KILLED", 2)
    assert "SIGTERM" in (run.failure_reason or "")
    assert "`sslbench resume 1` continues it" in (run.failure_reason or "")
    assert not [r for r in _alive_pids(db)]  # no worker left behind


@pytest.mark.multiprocess
def test_case05_a_resumed_distributed_run_relaunches_at_its_world_size(
        distributed_killed: tuple[Path, int, str], distributed_reference: RunRecord,
        capsys: pytest.CaptureFixture[str]) -> None:
    db, _, _ = distributed_killed
    assert main(["resume", "1", "--db", str(db), "--quiet"]) == 0
    assert "on 2 workers" in capsys.readouterr().out
    run = _run(db)
    assert (run.status, run.world_size, run.resumes) == ("COMPLETED", 2, 1)
    assert _losses(run) == _losses(distributed_reference)  # every epoch, exactly


def _alive_pids(db: Path) -> list[int]:
    with sqlite3.connect(db) as con:
        pids = [p for (p,) in con.execute("select pid from runs where pid is not null")]
    con.close()
    return [p for p in pids if process_alive(p)]


@pytest.mark.multiprocess
def test_case06_sigterm_to_a_sweep_stops_its_workers_and_is_exit_143(
        tmp_path: Path, repo: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "method": "simclr", "objective": "knn", "trials": 4, "pruner": "none",
        "fixed": {"data.dataset": "synthetic", "train.epochs": 20, "train.batch_size": 256,
                  "model.width": 8, "eval.diagnostics.enabled": False},
        "params": {"optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}}))
    db = tmp_path / "r.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "sslbench", "sweep", "simclr", "--space",
                             str(space), "--workers", "2", "--db", str(db), "--quiet"],
                            cwd=tmp_path, env=_env(repo), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)

    def two_trials_training() -> bool:
        try:
            with sqlite3.connect(db) as con:
                n = con.execute("select count(distinct r.id) from runs r join metrics m on "
                                "m.run_id = r.id where r.status = 'RUNNING'").fetchone()[0]
            con.close()
        except sqlite3.OperationalError:
            return False
        return n >= 2

    workers: list[int] = []
    try:
        _wait_for(two_trials_training, proc, "two trials training")
        workers = _alive_pids(db)
        assert len(workers) == 2 and proc.pid not in workers
        proc.send_signal(signal.SIGTERM)  # to the parent only, as a scheduler would
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in workers:  # on failure, leave nothing running
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("killed: ")
    deadline = time.monotonic() + 10
    while [p for p in workers if process_alive(p)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in workers if process_alive(p)], "a worker outlived the sweep"
    with sqlite3.connect(db) as con:
        statuses = sorted(s for (s,) in con.execute("select status from runs"))
    con.close()
    assert "RUNNING" not in statuses and statuses.count("KILLED") == 2
