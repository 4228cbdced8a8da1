"""Tschannen et al.'s reproductions (``--quick``) on Fashion-MNIST: each a stored run with its
cells as children, its summary and its figure; the critic grid resumes where it was stopped, bit
for bit, and skips what finished."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from sslbench.cli import main
from sslbench.reproduce import protocol, tschannen
from sslbench.reproduce.gaussian import SIGMA_EPS, SIGMA_Z, gaussian_mi_2d
from sslbench.store import RunRecord, Store

SMALL_FLOW = ["--set", "method.realnvp_layers=4", "--set", "method.realnvp_hidden_dim=64"]


def _argv(name: str, fmnist_dir: Path, db: str, *extra: str) -> list[str]:
    return ["reproduce", name, "--quick", "--seeds", "1", "--data-dir", str(fmnist_dir),
            "--db", db, "--out", "figs", *extra]


def _tree(db: str) -> tuple[RunRecord, list[RunRecord]]:
    """The one reproduction of ``db`` and its cells (with their metrics)."""
    with Store.open(db, create=False) as store:
        (top,) = [r for r in store.list_runs(kind="reproduce") if r.parent_id is None]
        return store.get_run(top.id), [store.get_run(c.id) for c in store.children(top.id)]


def _points(run: RunRecord) -> dict[tuple[str, int], float]:
    return {(m.key, m.step or 0): m.value for m in run.metrics if m.key != "eval_s"}


@pytest.mark.slow
def test_critics_resumes_a_stopped_cell_bit_for_bit_and_skips_finished_ones(
        workdir: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_argv("critics", fmnist_dir, "ref.sqlite")) == 0
    _, reference = _tree("ref.sqlite")
    # a SIGTERM during the first cell's evaluation at step 20: checkpoint, KILLED, grid stops
    real = protocol.log_evaluation
    sent = []

    def signal_once(store, run_id, schedule, step, metrics, echo) -> None:
        real(store, run_id, schedule, step, metrics, echo)
        if step == 20 and not sent:
            sent.append(run_id)
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(protocol, "log_evaluation", signal_once)
    assert main(_argv("critics", fmnist_dir, "r.sqlite")) != 0
    top, cells = _tree("r.sqlite")
    assert top.status == "KILLED" and [c.status for c in cells] == ["KILLED"]
    monkeypatch.setattr(protocol, "log_evaluation", real)
    assert main(_argv("critics", fmnist_dir, "r.sqlite")) == 0
    assert "continuing at step 20" in capsys.readouterr().out
    top, cells = _tree("r.sqlite")
    assert top.status == "COMPLETED" and len(cells) == 6
    assert all(c.status == "COMPLETED" for c in cells)
    for got, expected in zip(cells, reference, strict=True):
        assert _points(got) == _points(expected)
    # the grid summary: every critic × bound, the paired differences, the pixel baseline
    assert {"infonce_bilinear_accuracy", "nwj_mlp_bound", "infonce_separable_minus_mlp_accuracy",
            "pixels_top_half_accuracy"} <= set(top.summary)
    assert 0.5 < top.summary["pixels_top_half_accuracy"] < 1
    assert (workdir / "figs/critics.png").read_bytes()[:4] == b"\x89PNG"
    # again: nothing left to do, and the summary is made again from the stored points
    assert main(_argv("critics", fmnist_dir, "r.sqlite")) == 0
    assert capsys.readouterr().out.count("skipped") == 6
    again, cells = _tree("r.sqlite")
    assert len(cells) == 6 and again.summary == top.summary


@pytest.mark.slow
def test_bijective_and_adversarial_encoders_stay_invertible(workdir: Path,
                                                            fmnist_dir: Path) -> None:
    assert main(_argv("bijective", fmnist_dir, "b.sqlite", *SMALL_FLOW)) == 0
    top, cells = _tree("b.sqlite")
    assert len(cells) == 2 and all(c.status == "COMPLETED" for c in cells)
    for cell in cells:
        errors = [v for (k, _), v in _points(cell).items() if k == "inverse_max_error"]
        assert len(errors) == 3 and max(errors) < 1e-4  # steps 0, 20, 40
    assert math.isfinite(top.summary["infonce_accuracy_change"])
    assert main(_argv("adversarial", fmnist_dir, "a.sqlite", *SMALL_FLOW)) == 0
    top, (cell,) = _tree("a.sqlite")
    points = _points(cell)
    assert max(v for (k, _), v in points.items() if k == "inverse_max_error") < 1e-4
    # the encoder's loss is the cross-entropy to uniform: at least log 10
    assert all(v >= math.log(10) - 1e-5 for (k, _), v in points.items() if k == "encoder_loss")
    assert top.status == "COMPLETED" and (workdir / "figs/adversarial.png").is_file()


@pytest.mark.slow
def test_skip_mlp_starts_well_conditioned_and_mi_target_records_the_gap(
        workdir: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tschannen, "JACOBIAN_BATCH", 8)
    assert main(_argv("skip-mlp", fmnist_dir, "s.sqlite")) == 0
    top, cells = _tree("s.sqlite")
    for cell in cells:
        points = _points(cell)
        # the identity (weights ~ N(0, 1e-8)) has all singular values ~1: log κ ~ 0
        assert points[("log_condition_p100", 0)] < 0.05
        assert points[("log_condition_p100", 40)] > points[("log_condition_p100", 0)]
    assert "infonce_log_condition_p100_change" in top.summary
    assert main(_argv("mi-target", fmnist_dir, "t.sqlite", "--mi-target", "0.5")) == 0
    top, cells = _tree("t.sqlite")
    assert len(cells) == 4  # ConvNet and MLP, InfoNCE and NWJ
    for cell in cells:
        points = _points(cell)
        for step in (0, 20, 40):
            assert points[("test_objective", step)] == pytest.approx(
                abs(points[("test_bound", step)] - 0.5))
    assert "infonce_t=0.5_convnet_minus_mlp_accuracy" in top.summary


@pytest.mark.slow
def test_negative_sampling(workdir: Path) -> None:
    # Σ = Σ_z + Σ_ε = [[2, 0.4], [0.4, 2]]: ρ = 0.2, I = −½ log(1 − 0.04)
    truth = gaussian_mi_2d(torch.tensor(SIGMA_Z) + torch.tensor(SIGMA_EPS))
    assert truth == pytest.approx(-0.5 * math.log(0.96))
    argv = ["reproduce", "negative-sampling", "--quick", "--seeds", "2", "--steps", "200",
            "--db", "n.sqlite", "--out", "figs"]
    assert main(argv) == 0
    top, _ = _tree("n.sqlite")
    assert top.summary["true_mi"] == pytest.approx(-0.5 * math.log(0.96))
    assert {"infonce_iid", "infonce_noniid", "nwj_iid", "nwj_noniid"} <= set(top.summary)
    steps = sorted({m.step for m in top.metrics if m.key == "infonce_noniid_seed1"})
    assert steps == [100, 200]
    assert (workdir / "figs/negative_sampling.png").is_file()



def _by_cell(cells: list[RunRecord]) -> dict[str, dict[tuple[str, int], float]]:
    return {str(c.config["cell"]): _points(c) for c in cells}


@pytest.mark.slow
def test_critics_in_two_worker_processes_store_what_one_process_stores(
        workdir: Path, fmnist_dir: Path) -> None:
    """``--jobs 2``: the same six cells with the same points, bit for bit; a SIGTERM to the
    command reaches the workers, which leave their runs KILLED (none RUNNING); the same command
    again finishes the grid, still bit for bit."""
    assert main(_argv("critics", fmnist_dir, "one.sqlite")) == 0
    reference = _by_cell(_tree("one.sqlite")[1])

    def terminate_once_a_cell_runs() -> None:
        while True:
            time.sleep(0.2)
            if not Path("two.sqlite").exists():
                continue
            with Store.open("two.sqlite", create=False) as store:
                if any(r.status == "RUNNING" for r in store.list_runs(kind="reproduce")
                       if r.parent_id is not None):
                    os.kill(os.getpid(), signal.SIGTERM)
                    return

    watcher = threading.Thread(target=terminate_once_a_cell_runs, daemon=True)
    watcher.start()
    assert main(_argv("critics", fmnist_dir, "two.sqlite", "--jobs", "2")) != 0
    watcher.join()
    top, cells = _tree("two.sqlite")
    assert top.status == "KILLED" and cells
    statuses = {c.status for c in cells}
    assert "KILLED" in statuses and "RUNNING" not in statuses  # forwarded, checkpointed, marked
    assert main(_argv("critics", fmnist_dir, "two.sqlite", "--jobs", "2")) == 0
    top, cells = _tree("two.sqlite")
    assert top.status == "COMPLETED" and all(c.status == "COMPLETED" for c in cells)
    assert _by_cell(cells) == reference
    assert {"infonce_separable_minus_mlp_accuracy", "pixels_top_half_accuracy"} <= set(top.summary)
