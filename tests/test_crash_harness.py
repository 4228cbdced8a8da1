"""The crash harness: kill -9, SIGTERM and SIGINT at random points of pretrain, resume, an
evaluation, a sweep and `db upgrade` (real processes), then check what must hold afterwards:

- no RUNNING row without a live process, and no process of the tree left alive;
- no row without its files (every artifact exists with its recorded sha256) and no files
  without a row (every run folder is named by the uid of a run, every checkpoint carries it);
- metrics never duplicated ((run, key, epoch, step) once);
- a stopped run resumes (or, without a checkpoint, is refused with the reason) and ends equal
  to an uninterrupted one; a stopped sweep finishes its budget with every trial recorded once;
  an interrupted upgrade leaves the database readable with all its runs.

The points are drawn from a seeded generator (reproducible); each scenario's delay is a fraction
of the command's duration measured on this machine. $SSLBENCH_CRASH_COUNTS, when set, receives
the number of crash points and invariant checks.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from sslbench.cli import main
from sslbench.files import file_sha256
from sslbench.store import RunRecord, Store
from sslbench.store.api import process_alive

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]

RUN = ["--dataset", "synthetic", "--epochs", "3", "--eval", "none", "--quiet",
       "train.batch_size=256", "model.width=8", "eval.diagnostics.enabled=false"]
RNG = random.Random(17)
COUNTS: Counter[str] = Counter()


def _env(repo: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    env.pop("SSLBENCH_DB", None)
    return env


def _start(argv: list[str], cwd: Path, repo: Path) -> tuple[subprocess.Popen[str], float]:
    proc = subprocess.Popen([sys.executable, "-m", "sslbench", *argv], cwd=cwd, env=_env(repo),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    return proc, time.monotonic()


def _timed(argv: list[str], cwd: Path, repo: Path) -> float:
    """Seconds an uninterrupted ``argv`` takes here (the scale of the random crash points)."""
    proc, t0 = _start(argv, cwd, repo)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return time.monotonic() - t0


def _crash(argv: list[str], cwd: Path, repo: Path, sig: signal.Signals, duration: float,
           group: bool = False) -> tuple[int, str]:
    """Run ``argv`` and send ``sig`` at a random point of its expected ``duration`` (to its
    process group, as a terminal sends Ctrl-C, when ``group``); its exit code and stderr."""
    COUNTS["crash points injected"] += 1
    proc, t0 = _start(argv, cwd, repo)
    delay = RNG.uniform(0.15, 0.95) * duration
    try:
        while time.monotonic() - t0 < delay and proc.poll() is None:
            time.sleep(0.01)
        if proc.poll() is None:
            (os.killpg if group else os.kill)(proc.pid, sig)
        _, err = proc.communicate(timeout=300)  # stopped, not hung
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # 128 + signal once sslbench runs; the bare signal only while the interpreter is starting
    # (before sslbench's handlers exist, nothing has been recorded: the invariants still hold)
    allowed = {0, -sig.value} | ({128 + sig.value} if sig != signal.SIGKILL else set())
    assert proc.returncode in allowed, (proc.returncode, err)
    if proc.returncode == -sig.value and sig != signal.SIGKILL:
        COUNTS["signals that arrived before sslbench started"] += 1
        assert not err, err
    if proc.returncode > 0:
        assert "Traceback" not in err, err
    return proc.returncode, err


def _check(condition: bool, what: str) -> None:
    COUNTS["invariants checked"] += 1
    assert condition, what


def check_invariants(db: Path, root: Path) -> list[RunRecord]:
    """Every invariant of the module docstring that holds for any database; its runs."""
    with Store.open(str(db), create=False) as store:  # marks KILLED the runs of dead processes
        runs = [store.get_run(r.id) for r in store.list_runs()]
    uids = {r.uid: r for r in runs}
    for run in runs:
        _check(run.status != "RUNNING" or (run.pid is not None and process_alive(run.pid)),
               f"run {run.id} RUNNING without a live process")
        _check(run.pid is None or not process_alive(run.pid) or run.pid == os.getpid(),
               f"process {run.pid} of run {run.id} outlived its command")
        for artifact in run.artifacts:
            # the recorded file, or (killed between the commit and the rename) its .tmp, which
            # the next load renames
            path, tmp = Path(artifact.path), Path(artifact.path + ".tmp")
            _check(any(p.is_file() and file_sha256(p) == artifact.sha256 for p in (path, tmp)),
                   f"run {run.id}: artifact {path} missing or changed")
        seen = [(m.key, m.epoch, m.step) for m in run.metrics]
        _check(len(seen) == len(set(seen)), f"run {run.id}: a metric logged twice")
    for folder in root.iterdir() if root.is_dir() else []:
        _check(folder.name in uids, f"{folder} belongs to no run of {db.name}")
        checkpoint = folder / "checkpoint.pt"
        if checkpoint.is_file():
            state = torch.load(checkpoint, weights_only=True)
            _check(state["run_uid"] == folder.name, f"{checkpoint} carries another run's uid")
    return runs


def _curves(run: RunRecord) -> dict[tuple[str, int | None], float]:
    return {(m.key, m.epoch): m.value for m in run.metrics if m.key in ("loss", "lr", "knn_top1")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, repo: Path) -> tuple[RunRecord, float]:
    """An uninterrupted run, and how long its command takes."""
    folder = tmp_path_factory.mktemp("reference")
    seconds = _timed(["pretrain", "simclr", *RUN, "--db", "r.sqlite"], folder, repo)
    with Store.open(str(folder / "r.sqlite"), create=False) as store:
        return store.get_run(1), seconds


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    if target := os.environ.get("SSLBENCH_CRASH_COUNTS"):
        Path(target).write_text(json.dumps(dict(COUNTS), indent=2) + "\n")


def _finish_and_compare(db: Path, reference: RunRecord) -> None:
    """Resume run 1 if it stopped; it must end equal to the uninterrupted reference (or be
    refused, without a checkpoint, with the reason)."""
    with Store.open(str(db), create=False) as store:
        if not store.list_runs():
            return  # stopped before the run was recorded
        run = store.get_run(1)
    if run.status != "COMPLETED":
        has_checkpoint = any(a.name == "checkpoint" for a in run.artifacts)
        code = main(["resume", "1", "--db", str(db), "--quiet"])
        _check(code == (0 if has_checkpoint else 2), f"resume of {run.status} run 1: {code}")
        if not has_checkpoint:
            reason = run.failure_reason or ""
            _check("sslbench resume" not in reason, "a run without a checkpoint is not "
                                                    "promised a resume")
            return
    with Store.open(str(db), create=False) as store:
        run = store.get_run(1)
    _check(run.status == "COMPLETED" and _curves(run) == _curves(reference),
           "a resumed run equals an uninterrupted one")


SIGNALS = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT]


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_pretrain_killed_anywhere(tmp_path: Path, repo: Path, sig: signal.Signals,
                                  reference: tuple[RunRecord, float]) -> None:
    ref, seconds = reference
    _crash(["pretrain", "simclr", *RUN, "--db", "r.sqlite"], tmp_path, repo, sig, seconds,
           group=sig == signal.SIGINT)
    db = tmp_path / "r.sqlite"
    if not db.exists():
        return  # stopped before anything was recorded: nothing to check but the exit code
    check_invariants(db, tmp_path / "r.runs")
    _finish_and_compare(db, ref)
    check_invariants(db, tmp_path / "r.runs")


@pytest.fixture
def stopped_after_epoch_1(tmp_path: Path, repo: Path) -> Path:
    """A run stopped by SIGTERM once its epoch-1 checkpoint exists (KILLED, resumable)."""
    proc, _ = _start(["pretrain", "simclr", *RUN, "--db", "r.sqlite"], tmp_path, repo)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob("r.runs/*/checkpoint.pt")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=300)
    return tmp_path / "r.sqlite"


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_resume_killed_anywhere(stopped_after_epoch_1: Path, repo: Path, sig: signal.Signals,
                                reference: tuple[RunRecord, float]) -> None:
    ref, seconds = reference
    db = stopped_after_epoch_1
    _crash(["resume", "1", "--db", "r.sqlite", "--quiet"], db.parent, repo, sig, seconds,
           group=sig == signal.SIGINT)
    check_invariants(db, db.parent / "r.runs")
    _finish_and_compare(db, ref)
    check_invariants(db, db.parent / "r.runs")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=lambda s: s.name)
def test_evaluation_killed_anywhere(stopped_after_epoch_1: Path, repo: Path,
                                    sig: signal.Signals,
                                    reference: tuple[RunRecord, float]) -> None:
    db = stopped_after_epoch_1
    assert main(["resume", "1", "--db", str(db), "--quiet"]) == 0
    argv = ["knn", "1", "--db", "r.sqlite"]
    seconds = _timed(argv, db.parent, repo)
    _crash(argv, db.parent, repo, sig, seconds)
    runs = check_invariants(db, db.parent / "r.runs")
    parent = next(r for r in runs if r.id == 1)
    _check(parent.status == "COMPLETED", "an evaluation's crash leaves its pretrain run alone")
    assert main(["knn", "1", "--db", str(db)]) == 0  # and it can be evaluated again


SPACE = {"method": "simclr", "objective": "knn", "trials": 3, "pruner": "none",
         "fixed": {"data.dataset": "synthetic", "train.epochs": 2, "train.batch_size": 256,
                   "model.width": 8, "eval.diagnostics.enabled": False},
         "params": {"optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}}


def _wait_for_workers(db: Path, timeout: float = 120) -> None:
    """Until no process recorded in ``db`` is alive (workers told by their dead parent to stop
    take a step or two to do it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as con:
            pids = [p for (p,) in con.execute("select pid from runs where pid is not null")]
        con.close()
        if not [p for p in pids if process_alive(p)]:
            return
        time.sleep(0.2)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=lambda s: s.name)
def test_sweep_killed_anywhere(tmp_path: Path, repo: Path, sig: signal.Signals,
                               monkeypatch: pytest.MonkeyPatch,
                               reference: tuple[RunRecord, float]) -> None:
    import optuna
    from optuna.trial import TrialState

    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    argv = ["sweep", "simclr", "--space", "space.yaml", "--workers", "2", "--db", "r.sqlite",
            "--quiet"]
    _, seconds = reference
    _crash(argv, tmp_path, repo, sig, 2 * seconds)
    db = tmp_path / "r.sqlite"
    if db.exists():
        _wait_for_workers(db)
        check_invariants(db, tmp_path / "r.runs")
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0  # the same command finishes the study
    runs = check_invariants(db, tmp_path / "r.runs")
    from sslbench.sweep.study import open_storage

    storage, _ = open_storage(None, f"sqlite:///{db}")
    trials = optuna.load_study(study_name="simclr-synthetic", storage=storage).get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    _check(len(done) == SPACE["trials"], f"{len(done)} trials completed")
    _check(not [t for t in trials if t.state == TrialState.RUNNING], "a trial left RUNNING")
    recorded = [t.user_attrs["run_id"] for t in done]
    _check(len(set(recorded)) == len(recorded) and all(
        next(r for r in runs if r.id == i).status == "COMPLETED" for i in recorded),
        "every completed trial is one COMPLETED run")


@pytest.fixture(scope="module")
def old_schema(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A database at revision sslbench_0002 with thousands of runs (an upgrade of it takes a
    moment, long enough to be killed in the middle)."""
    from alembic import command

    from sslbench.report.fabricate import fabricate
    from sslbench.store.db import alembic_config, make_engine

    db = tmp_path_factory.mktemp("old") / "r.sqlite"
    with Store.open(str(db)) as store:
        fabricate(store, 3000, epochs=1)
        n = len(store.list_runs())
    engine = make_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        command.downgrade(alembic_config(conn), "sslbench_0002")
    engine.dispose()
    return db, n


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_db_upgrade_killed_anywhere(old_schema: tuple[Path, int], tmp_path: Path, repo: Path,
                                    attempt: int) -> None:
    source, n = old_schema
    db = tmp_path / "r.sqlite"
    shutil.copyfile(source, db)
    seconds = _timed(["db", "upgrade", "--db", "r.sqlite"], tmp_path, repo)
    shutil.copyfile(source, db)
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    _crash(["db", "upgrade", "--db", "r.sqlite"], tmp_path, repo, signal.SIGKILL, seconds)
    with sqlite3.connect(db) as con:
        revision = con.execute("select version_num from sslbench_alembic_version").fetchall()
        count = con.execute("select count(*) from runs").fetchone()[0]
    con.close()
    _check(revision in ([("sslbench_0002",)], [("sslbench_0003",)]), f"revision {revision}")
    _check(count == n, "an interrupted upgrade keeps every run")
    assert main(["db", "upgrade", "--db", str(db)]) == 0
    runs = check_invariants(db, tmp_path / "r.runs")
    _check(len({r.uid for r in runs}) == n, "every run has its own uid")
