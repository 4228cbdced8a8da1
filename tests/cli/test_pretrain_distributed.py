"""`sslbench pretrain --procs 2` end to end on synthetic data: what rank 0 records, what a failed
worker leaves in the store, bad distributed input; and the same run under plain torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sslbench.cli import main
from sslbench.distributed import launch
from sslbench.methods import build_method
from sslbench.resolve import config_from_dict
from sslbench.store import Store

TINY = ["train.epochs=1", "train.batch_size=32", "eval.linear.epochs=5",
        "eval.knn.monitor_every=0", "eval.diagnostics.enabled=false"]



def _check_recorded_once_by_rank_0(db: Path) -> None:
    with Store.open(str(db), create=False) as store:
        assert sorted(r.id for r in store.list_runs()) == [1, 2]  # the pretraining and its probe
        pre, lin = store.get_run(1), store.get_run(2)
    assert (pre.status, pre.world_size, pre.device) == ("COMPLETED", 2, "cpu (gloo)")
    assert [m.epoch for m in pre.metrics if m.key == "loss"] == [1]  # one rank logs
    assert (lin.status, lin.parent_id) == ("COMPLETED", 1)
    # The checkpoint holds the unwrapped method: it loads into a single-process model.
    checkpoint = torch.load(next(a.path for a in pre.artifacts if a.name == "checkpoint"),
                            weights_only=True)
    assert checkpoint["world_size"] == 2
    method = build_method(config_from_dict(pre.config), 1)
    method.load_state_dict(checkpoint["method"])  # strict: same keys, same shapes


@pytest.mark.multiprocess
def test_pretrain_with_two_cpu_workers(workdir: Path) -> None:
    db = workdir / "r.sqlite"
    argv = ["pretrain", "simclr", "--dataset", "synthetic", "--procs", "2", "--db", str(db),
            "--quiet", *TINY]
    assert main(argv) == 0
    _check_recorded_once_by_rank_0(db)


@pytest.mark.multiprocess
@pytest.mark.slow
def test_pretrain_under_torchrun(workdir: Path, repo: Path) -> None:
    db = workdir / "r.sqlite"
    env = {**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc-per-node", "2", "-m", "sslbench", "pretrain", "simclr",
                    "--dataset", "synthetic", "--gpus", "0", "--db", str(db), "--quiet", *TINY],
                   check=True, env=env, cwd=workdir, timeout=600)
    _check_recorded_once_by_rank_0(db)


def test_a_failed_worker_marks_the_run_failed_with_rank_and_reason(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise launch.WorkerFailure(1, "RuntimeError: out of memory")

    import sslbench.run.pretrain as run_pretrain

    monkeypatch.setattr(run_pretrain, "launch", crash)
    db = workdir / "r.sqlite"
    assert main(["pretrain", "simclr", "--dataset", "synthetic", "--procs", "2", "--db",
                 str(db), "--quiet", *TINY]) == 1
    assert "run 1: worker rank 1 failed: RuntimeError: out of memory" in capsys.readouterr().err
    with Store.open(str(db), create=False) as store:
        run = store.get_run(1)
    assert (run.status, run.world_size) == ("FAILED", 2)
    assert run.failure_reason == "worker rank 1 failed: RuntimeError: out of memory"


@pytest.mark.parametrize(("args", "message"), [
    (["--procs", "2", "train.batch_size=33"], "does not split into 2 workers"),
    (["--procs", "2", "--gpus", "1"], "choose one"),
    (["--procs", "2", "--nnodes", "2", "--node-rank", "2"], "--node-rank 2"),
])
def test_bad_distributed_input_is_exit_2_and_writes_nothing(
        workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    db = workdir / "r.sqlite"
    assert main(["pretrain", "simclr", "--dataset", "synthetic", "--db", str(db), *args]) == 2
    assert message in capsys.readouterr().err
    assert not db.exists()
