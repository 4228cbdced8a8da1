"""`sslbench pretrain` and `sslbench linear-eval` end to end on synthetic data; bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sslbench.cli import main
from sslbench.store import Store


def test_pretrain_simclr_then_runs_and_linear_eval(workdir: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    db = workdir / "r.sqlite"
    assert main(["pretrain", "simclr", "--dataset", "synthetic", "--db", str(db), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "linear probe of run 1" in out and "top-1" in out

    with Store.open(str(db), create=False) as store:
        runs = {r.id: r for r in store.list_runs()}
        assert set(runs) == {1, 2}
        pre, lin = store.get_run(1), store.get_run(2)
    assert (pre.kind, pre.status, pre.method) == ("pretrain", "COMPLETED", "simclr")
    assert (lin.kind, lin.status, lin.parent_id) == ("linear", "COMPLETED", 1)
    # per-epoch metrics are stored as they come: loss, lr and img/s for each of the 2 epochs
    for key in ("loss", "lr", "img_per_s"):
        assert sorted(m.epoch for m in pre.metrics if m.key == key) == [1, 2]
    assert pre.config["method"]["temperature"] == pytest.approx(0.2)
    assert pre.config["train"]["epochs"] == 2
    if Path("/proc/stat").exists():  # the other processes' CPU load while it trained (Linux)
        assert pre.summary["others_cpu"] >= 0.0
    assert pre.summary["cpu_threads"] == torch.get_num_threads()  # what a wall-clock budget buys
    checkpoint = next(a for a in pre.artifacts if a.name == "checkpoint")
    assert Path(checkpoint.path).is_file() and checkpoint.size_bytes > 0
    # the synthetic classes are separable: a working encoder + probe is far above chance (10 %)
    assert lin.summary["linear_top1"] > 0.6
    assert 0.0 <= lin.summary["linear_top1"] <= lin.summary["linear_top5"] <= 1.0

    assert main(["runs", "list", "--db", str(db)]) == 0
    listing = capsys.readouterr().out
    assert "COMPLETED" in listing and "simclr" in listing and "linear" in listing

    assert main(["runs", "show", "1", "--db", str(db), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config"]["method"]["name"] == "simclr"

    assert main(["linear-eval", "1", "--db", str(db), "--epochs", "3"]) == 0
    assert "run 3: linear probe of run 1" in capsys.readouterr().out
    with Store.open(str(db), create=False) as store:
        again = store.get_run(3)
    assert (again.kind, again.parent_id, again.status) == ("linear", 1, "COMPLETED")
    assert again.config["linear"]["epochs"] == 3


def test_pretrain_byol_without_eval_then_linear_eval(workdir: Path) -> None:
    db = str(workdir / "r.sqlite")
    argv = ["pretrain", "byol", "--dataset", "synthetic", "--db", db, "--eval", "none", "--quiet",
            "method.ema_decay=0.996", "--epochs", "1"]
    assert main(argv) == 0
    with Store.open(db, create=False) as store:
        (listed,) = store.list_runs()
        run = store.get_run(listed.id)
        assert run.config["method"]["ema_decay"] == pytest.approx(0.996)
        assert [m.value for m in run.metrics if m.key == "ema_decay"] == [pytest.approx(1.0)]
    assert main(["linear-eval", "1", "--db", db]) == 0
    with Store.open(db, create=False) as store:
        assert [r.kind for r in store.children(1)] == ["linear"]


def test_dry_run_prints_config_and_writes_nothing(workdir: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    db = workdir / "r.sqlite"
    argv = ["pretrain", "byol", "--dataset", "synthetic", "--db", str(db), "--dry-run",
            "optimizer.lr=3e-3", "--batch-size", "32"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "lr: 0.003" in out and "batch_size: 32" in out and "name: byol" in out
    assert not db.exists() and not (workdir / "runs").exists()


def test_config_file_is_layered_under_flags_and_overrides(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = workdir / "exp.yaml"
    cfg.write_text("train:\n  epochs: 7\n  batch_size: 48\noptimizer.lr: 0.01\n")
    argv = ["pretrain", "simclr", "--dataset", "synthetic", "-c", str(cfg), "--dry-run",
            "--epochs", "5", "optimizer.lr=0.02"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "epochs: 5" in out and "batch_size: 48" in out and "lr: 0.02" in out


# The catalogue of bad input (all commands) is tests/cli/test_bad_input.py.


def test_bad_input_does_not_create_a_database(workdir: Path) -> None:
    db = workdir / "fresh.sqlite"
    assert main(["pretrain", "simclr", "--dataset", "synthetic", "--db", str(db),
                 "optimizer.lr=-1"]) == 2
    assert main(["pretrain", "simclr", "--dataset", "synthetic", "--db", str(db),
                 "--gpus", "2"]) == 2
    assert main(["linear-eval", "1", "--db", str(db)]) == 2
    assert not db.exists()
    assert not (workdir / "runs").exists()


def test_linear_eval_rejects_a_linear_run(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(workdir / "r.sqlite")
    assert main(["pretrain", "simclr", "--dataset", "synthetic", "--db", db, "--quiet",
                 "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main(["linear-eval", "2", "--db", db]) == 2
    assert "pretrain run id" in capsys.readouterr().err


def test_non_finite_loss_marks_the_run_failed(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import sslbench.methods.simclr as simclr

    real = simclr.nt_xent

    def poisoned(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
        return real(z1, z2, temperature) * float("nan")

    monkeypatch.setattr(simclr, "nt_xent", poisoned)
    db = str(workdir / "r.sqlite")
    assert main(["pretrain", "simclr", "--dataset", "synthetic", "--db", db, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("failed: run 1: non-finite loss")
    with Store.open(db, create=False) as store:
        (run,) = store.list_runs()
    assert run.status == "FAILED"
    assert run.failure_reason is not None and "non-finite loss at step 1" in run.failure_reason
    assert run.ended_at is not None


def test_interrupt_marks_the_run_killed(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sslbench.run.pretrain as run_pretrain

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(run_pretrain, "pretrain", interrupted)
    db = str(workdir / "r.sqlite")
    assert main(["pretrain", "simclr", "--dataset", "synthetic", "--db", db, "--quiet"]) == 130
    with Store.open(db, create=False) as store:
        (run,) = store.list_runs()
    assert (run.status, run.failure_reason) == (
        "KILLED", "interrupted (Ctrl-C); it had no checkpoint yet: start it again with "
                  "`sslbench pretrain`")


@pytest.mark.multiprocess
@pytest.mark.parametrize("argv", [["--help"], ["runs", "--help"], ["pretrain", "--help"],
                                  ["datasets", "--help"], ["export", "--help"],
                                  ["runs", "gc", "--help"]])
def test_cli_help_does_not_import_torch(argv: list[str], repo: Path) -> None:
    code = (
        "import sys\n"
        "from sslbench.cli import main\n"
        f"rc = main({argv!r})\n"
        "assert rc == 0, rc\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'numpy') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    assert "Usage" in proc.stdout


def test_pretrain_loads_the_data_once_and_builds_the_method_once(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sslbench.run.pretrain as run_pretrain

    calls = {"load": 0, "build": 0}
    real_load, real_build = run_pretrain.load_run_dataset, run_pretrain.build_method

    def load(*args: object, **kwargs: object) -> object:
        calls["load"] += 1
        return real_load(*args, **kwargs)

    def build(*args: object, **kwargs: object) -> object:
        calls["build"] += 1
        return real_build(*args, **kwargs)

    monkeypatch.setattr(run_pretrain, "load_run_dataset", load)
    monkeypatch.setattr(run_pretrain, "build_method", build)
    db = str(workdir / "r.sqlite")
    assert main(["pretrain", "simclr", "--dataset", "synthetic", "--db", db, "--quiet",
                 "--eval", "linear,knn", "train.epochs=1"]) == 0
    assert calls == {"load": 1, "build": 1}
