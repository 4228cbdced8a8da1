"""TensorBoard curves: written live by `pretrain --tensorboard DIR` and after the fact by `runs
export-tensorboard`, read back with TensorBoard's own reader: the same tags, steps and values as
the database holds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sslbench.cli import main
from sslbench.store import Store

pytest.importorskip("tensorboard")


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in ``folder``'s event files, read by TensorBoard's accumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reader = EventAccumulator(str(folder))
    reader.Reload()
    return {tag: [(e.step, e.value) for e in reader.Scalars(tag)]
            for tag in reader.Tags()["scalars"]}


@pytest.fixture(scope="module")
def live_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 2-epoch SimCLR run on `synthetic` with live curves and a kNN evaluation: (folder, db)."""
    folder = tmp_path_factory.mktemp("tb")
    db = folder / "r.sqlite"
    assert main(["pretrain", "simclr", "--dataset", "synthetic", "--epochs", "2", "--quiet",
                 "--eval", "knn", "--db", str(db), "--tensorboard", str(folder / "live"),
                 f"train.output_dir={folder / 'runs'}", "eval.knn.monitor_train_size=256",
                 "train.batch_size=128"]) == 0
    return folder, db


def test_live_curves_hold_what_the_database_holds(live_run: tuple[Path, Path]) -> None:
    folder, db = live_run
    series = _scalars(folder / "live" / "run1-simclr-synthetic")
    with Store.open(str(db)) as store:
        run = store.get_run(1)
        knn = store.get_run(2)
    stored: dict[str, list[tuple[int, float]]] = {}
    for row in run.metrics:
        stored.setdefault(row.key, []).append((row.step, row.value))
    assert {"train/loss", "train/lr", "knn/val_top1", "diagnostics/rankme_backbone",
            "diagnostics/alignment", "eval/knn_top1"} <= set(series)
    steps = [step for step, _ in stored["loss"]]
    assert steps == [8, 16] and [s for s, _ in series["train/loss"]] == steps
    for key, points in stored.items():
        tag = {"val_knn_top1": "knn/val_top1"}.get(key, key)
        got = series.get(f"train/{tag}") or series.get(tag) or series[f"diagnostics/{key}"]
        assert [s for s, _ in got] == [s for s, _ in points], key
        assert [v for _, v in got] == pytest.approx([v for _, v in points], rel=1e-6), key
    assert series["eval/knn_top1"] == [(16, pytest.approx(knn.summary["knn_top1"]))]


def test_export_of_a_stored_run_overlays_the_live_curves(
        live_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, db = live_run
    out = tmp_path / "after"
    assert main(["runs", "export-tensorboard", "1", "--db", str(db), "--out", str(out)]) == 0
    assert "tensorboard --logdir" in capsys.readouterr().out
    assert _scalars(out / "run1-simclr-synthetic") == \
        _scalars(folder / "live" / "run1-simclr-synthetic")
    # a second export into the same folder would duplicate every point: refused, nothing written
    before = sorted(out.rglob("*"))
    assert main(["runs", "export-tensorboard", "1", "--db", str(db), "--out", str(out)]) == 2
    assert "already holds" in capsys.readouterr().err
    assert sorted(out.rglob("*")) == before


def test_export_refuses_unknown_runs_before_writing(live_run: tuple[Path, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _, db = live_run
    assert main(["runs", "export-tensorboard", "1", "99", "--db", str(db),
                 "--out", str(tmp_path / "tb")]) == 2
    assert capsys.readouterr().err.strip() == "error: no run with id 99 in DB"
    assert not (tmp_path / "tb").exists()


def test_without_the_package_the_extra_is_named(live_run: tuple[Path, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    _, db = live_run
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    assert main(["runs", "export-tensorboard", "1", "--db", str(db),
                 "--out", str(tmp_path / "tb")]) == 2
    assert "sslbench[tensorboard]" in capsys.readouterr().err
    assert main(["pretrain", "simclr", "--dataset", "synthetic", "--db", str(tmp_path / "r.db"),
                 "--tensorboard", str(tmp_path / "tb")]) == 2
    assert not (tmp_path / "r.db").exists() and not (tmp_path / "tb").exists()
