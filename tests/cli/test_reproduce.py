"""`sslbench reproduce NAME`: each reproduction is a run in the store with its points and figure;
bad input is one line, exit 2, nothing written. The Gaussian ones are run here at a reduced size;
the training ones on synthetic data are slow tests (their Fashion-MNIST figures are in the README).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sslbench.cli import main
from sslbench.reproduce import gaussian
from sslbench.store import Store


@pytest.fixture
def small_gaussians(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gaussian, "BATCHES", 3)
    monkeypatch.setattr(gaussian, "CEILING_KS", (16, 64))
    monkeypatch.setattr(gaussian, "CEILING_TRUE_MI", (1.0, 10.0))
    monkeypatch.setattr(gaussian, "SWEEP_TRUE_MI", (0.5, 8.0))


def _only_run(db: Path, kind: str = "reproduce"):
    with Store.open(str(db), create=False) as store:
        (run,) = store.list_runs(kind=kind)
        return store.get_run(run.id)


def test_infonce_ceiling_is_recorded_with_its_figure(workdir: Path, small_gaussians: None) -> None:
    db = workdir / "r.sqlite"
    assert main(["reproduce", "infonce-ceiling", "--db", str(db), "--out", "figs"]) == 0
    run = _only_run(db)
    assert run.status == "COMPLETED" and run.method == "infonce-ceiling"
    assert run.summary["max_excess_over_log_k"] <= 0
    points = {(m.key, m.step): m.value for m in run.metrics}
    assert points[("log_k", 64)] == pytest.approx(math.log(64))
    assert points[("infonce_true10", 64)] <= math.log(64)
    assert points[("infonce_true10", 64)] > math.log(64) - 0.5  # saturated at the ceiling
    (figure,) = run.artifacts
    assert figure.name == "figure" and Path(figure.path) == workdir / "figs/infonce_ceiling.png"
    assert Path(figure.path).read_bytes()[:4] == b"\x89PNG"


def test_gaussian_bounds_sweep(workdir: Path, small_gaussians: None) -> None:
    db = workdir / "r.sqlite"
    assert main(["reproduce", "gaussian-bounds", "--db", str(db), "--out", "figs"]) == 0
    run = _only_run(db)
    points = {(m.key, m.step): m.value for m in run.metrics}
    # InfoNCE saturates below log 128 at 8 nats; NWJ's spread grows with the true MI
    assert points[("infonce_mean", 80)] < math.log(128)
    assert points[("nwj_std", 80)] > points[("nwj_std", 5)]
    assert abs(points[("dv_bias", 5)]) < 0.3
    assert (workdir / "figs/gaussian_bounds.png").is_file()


@pytest.mark.parametrize("argv,message", [
    (["reproduce", "nope"], "unknown reproduction"),
    (["reproduce", "critics", "--train-size", "1"], "--train-size"),
    (["reproduce", "batch-size", "--batch-sizes", "16,x"], "--batch-sizes"),
    (["reproduce", "batch-size", "--batch-sizes", "64", "--train-size", "32"], "larger"),
    (["reproduce", "critics", "--steps", "30", "--eval-every", "20"], "multiple"),
    (["reproduce", "bijective", "--quick", "--set", "method.nope=1"], "method.nope"),
    (["reproduce", "adversarial", "--quick", "--set", "method.critic=cosine"], "method.critic"),
])
def test_bad_input_is_one_line_and_writes_nothing(workdir: Path, argv: list[str], message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    db = workdir / "r.sqlite"
    assert main([*argv, "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not db.exists()


@pytest.mark.slow
def test_training_reproductions_on_synthetic_data(workdir: Path) -> None:
    db = workdir / "r.sqlite"
    common = ["--dataset", "synthetic", "--train-size", "256", "--test-size", "128",
              "--epochs", "1", "--db", str(db), "--out", "figs"]
    assert main(["reproduce", "simsiam-collapse", *common]) == 0
    assert main(["reproduce", "batch-size", "--batch-sizes", "32,128", *common]) == 0
    with Store.open(str(db), create=False) as store:
        repros = store.list_runs(kind="reproduce")
        assert sorted(r.method for r in repros) == ["batch-size", "simsiam-collapse"]
        for r in repros:
            run = store.get_run(r.id)
            assert run.status == "COMPLETED" and run.artifacts
            children = store.children(r.id)
            assert children and all(c.kind == "pretrain" for c in children)


def test_mean_interval_by_hand() -> None:
    from sslbench.reproduce.stats import mean_interval

    # mean 2, s = 1, t₀.₉₇₅(2) = 4.302653: half-width 4.302653 / √3
    assert mean_interval([1.0, 2.0, 3.0]) == pytest.approx((2.0, 4.302653 / math.sqrt(3)))
    assert math.isnan(mean_interval([5.0])[1]) and mean_interval([5.0])[0] == 5.0
    assert all(math.isnan(v) for v in mean_interval([1.0, math.nan]) + mean_interval([]))


def test_a_panel_reaching_millions_gets_a_symlog_axis(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """NWJ with a random critic reads −10⁷ nats at step 0: that panel gets a symlog y axis (so the
    trained values stay legible); an ordinary panel stays linear."""
    from sslbench.reproduce import figures

    plt = figures.pyplot()
    closed = []
    monkeypatch.setattr(plt, "close", closed.append)
    figures.plot_step_panels(tmp_path / "f.png", {
        "bound": {"NWJ": [[(0, -1.1e7), (1000, 2.5)], [(0, -3.0), (1000, 2.7)]]},
        "probe": {"NWJ": [[(0, 0.76), (1000, 0.78)]]}})
    axes = [ax for ax in closed[0].axes if ax.get_visible()]
    assert [ax.get_yscale() for ax in axes] == ["symlog", "linear"]
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
