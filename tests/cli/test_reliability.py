"""Runs are never lost: kill -9 and SIGTERM of a real `sslbench pretrain` process, resume to the
same result as an uninterrupted run, a full disk on checkpoint write (a FAILED run resumes
through the same path as a KILLED one)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sslbench.cli import main
from sslbench.store import RunRecord, Store
from sslbench.train.checkpoint import load_checkpoint

# 1024 synthetic images, 4 steps of 256 an epoch, with the per-epoch kNN monitor and diagnostics
SMALL = ["--dataset", "synthetic", "--epochs", "2", "--eval", "none", "--quiet",
         "train.batch_size=256", "model.width=8"]
TIMING = ("img_per_s", "epoch_s")


def _pretrain_argv(folder: Path) -> list[str]:
    return ["pretrain", "simclr", *SMALL, "--db", str(folder / "r.sqlite"),
            f"train.output_dir={folder / 'runs'}"]


def _curves(run: RunRecord) -> dict[tuple[str, int | None], float]:
    """Every metric of every epoch, timings aside; each (key, epoch) once."""
    out: dict[tuple[str, int | None], float] = {}
    for m in run.metrics:
        if m.key not in TIMING:
            assert (m.key, m.epoch) not in out, f"{m.key} logged twice for epoch {m.epoch}"
            out[m.key, m.epoch] = m.value
    return out


def _run(folder: Path, run_id: int = 1) -> RunRecord:
    with Store.open(str(folder / "r.sqlite"), create=False) as store:
        return store.get_run(run_id)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> RunRecord:
    """The same run, never interrupted."""
    folder = tmp_path_factory.mktemp("reference")
    assert main(_pretrain_argv(folder)) == 0
    return _run(folder)


def _start_and_wait_for_epoch_1(folder: Path, repo: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    env.pop("SSLBENCH_DB", None)
    proc = subprocess.Popen([sys.executable, "-m", "sslbench", *_pretrain_argv(folder)],
                            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 300
    # the run's folder is named by its uid; its checkpoint is written once epoch 1 is recorded
    while not list((folder / "runs").glob("*/checkpoint.pt")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return proc


def _resume_and_compare(folder: Path, reference: RunRecord) -> RunRecord:
    assert main(["resume", "1", "--db", str(folder / "r.sqlite"), "--quiet"]) == 0
    run = _run(folder)
    assert (run.status, run.failure_reason, run.resumes) == ("COMPLETED", None, 1)
    assert _curves(run) == _curves(reference)  # exactly: loss, lr, kNN, diagnostics per epoch
    assert run.summary["loss"] == reference.summary["loss"]
    final = load_checkpoint(next(a.path for a in run.artifacts if a.name == "checkpoint"))
    assert (final["epoch"], final["batch"]) == (2, 0)
    return run


@pytest.mark.multiprocess
def test_kill_9_mid_run_then_resume_ends_as_if_never_killed(
    tmp_path: Path, repo: Path, reference: RunRecord, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = _start_and_wait_for_epoch_1(tmp_path, repo)
    proc.kill()  # SIGKILL: no handler, no last word to the DB
    proc.communicate()
    assert _run(tmp_path).status in ("RUNNING", "KILLED")  # not looked at yet

    assert main(["runs", "show", "1", "--db", str(tmp_path / "r.sqlite"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "KILLED"
    assert f"process {proc.pid}" in shown["failure_reason"]
    assert "last heartbeat" in shown["failure_reason"]

    _resume_and_compare(tmp_path, reference)


@pytest.mark.multiprocess
def test_sigterm_saves_a_checkpoint_marks_killed_and_resumes(
    tmp_path: Path, repo: Path, reference: RunRecord
) -> None:
    proc = _start_and_wait_for_epoch_1(tmp_path, repo)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("killed: run 1: interrupted by SIGTERM") and "Traceback" not in err
    run = _run(tmp_path)
    assert run.status == "KILLED" and "SIGTERM" in (run.failure_reason or "")
    assert "sslbench resume 1" in (run.failure_reason or "")
    saved = load_checkpoint(Path(run.run_dir or "") / "checkpoint.pt")
    assert saved["step"] >= 4  # at least epoch 1, maybe part of epoch 2 (taken at a step)

    _resume_and_compare(tmp_path, reference)


def test_full_disk_on_checkpoint_write_fails_the_run_and_keeps_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    import sslbench.train.checkpoint as ckpt

    real_save, calls = ckpt.torch.save, []

    def disk_fills_after_epoch_1(obj: object, f: object) -> None:
        calls.append(f)
        if len(calls) > 1:
            Path(str(f)).write_bytes(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, f)

    monkeypatch.setattr(ckpt.torch, "save", disk_fills_after_epoch_1)
    assert main(_pretrain_argv(tmp_path)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("failed: run 1: cannot write checkpoint")
    assert "No space left on device" in err[0]
    run = _run(tmp_path)
    assert run.status == "FAILED" and "No space left" in (run.failure_reason or "")
    folder = Path(run.run_dir or "")
    assert folder.parent == tmp_path / "runs" and folder.name == run.uid
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.pt"]  # no .tmp left
    assert load_checkpoint(folder / "checkpoint.pt")["epoch"] == 1  # the last good one, whole
