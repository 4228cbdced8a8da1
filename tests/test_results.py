"""`sslbench.results`: runs, configs, metrics and leaderboards as records and DataFrames; the
notebook example of docs/python-api.md runs as written."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from sslbench import results
from sslbench.cli import main
from sslbench.errors import UserError
from sslbench.store import Store

pd = pytest.importorskip("pandas")


@pytest.fixture
def db(tmp_path: Path) -> str:
    """Two pretrain runs (BYOL, two learning rates), each with a kNN evaluation, and a failed
    SimCLR run."""
    path = str(tmp_path / "r.sqlite")
    with Store.open(path) as store:
        for lr, knn in ((1e-3, 0.71), (2e-3, 0.75)):
            config = {"method": {"name": "byol"}, "optimizer": {"lr": lr},
                      "train": {"epochs": 2}}
            run = store.create_run(kind="pretrain", method="byol", dataset="fashion-mnist",
                                   config=config, seed=0, backbone="convnet")
            for epoch in (1, 2):
                store.log_metrics(run, {"loss": 1 / epoch, "knn_top1": knn - 0.1 / epoch},
                                  step=10 * epoch, epoch=epoch)
            store.update_summary(run, loss=0.5)
            store.finish_run(run, "COMPLETED")
            child = store.create_run(kind="knn", method="byol", dataset="fashion-mnist",
                                     config={"protocol": "knn"}, seed=0, parent_id=run)
            store.update_summary(child, knn_top1=knn)
            store.finish_run(child, "COMPLETED")
        failed = store.create_run(kind="pretrain", method="simclr", dataset="fashion-mnist",
                                  config={"method": {"name": "simclr"}}, seed=0)
        store.finish_run(failed, "FAILED", failure_reason="non-finite loss at step 3")
    return path


def test_find_runs_filters(db: str) -> None:
    with results.open_store(db) as store:
        assert [r.id for r in results.find_runs(store, kind="pretrain")] == [5, 3, 1]
        assert [r.id for r in results.find_runs(store, parent=3)] == [4]
        assert [r.id for r in results.find_runs(store, where={"optimizer.lr": 2e-3})] == [3]
        assert [r.id for r in results.find_runs(store, status="FAILED")] == [5]
        assert [r.id for r in results.find_runs(store, kind="pretrain", limit=1,
                                                where={"train.epochs": 2})] == [3]
        assert results.find_runs(store, method="vicreg") == []


def test_runs_frame_has_fields_config_and_summary_columns(db: str) -> None:
    with results.open_store(db) as store:
        frame = results.runs_frame(store, kind="pretrain")
    assert list(frame.index) == [5, 3, 1]
    assert frame.loc[3, "method"] == "byol" and frame.loc[5, "status"] == "FAILED"
    assert frame.loc[3, "config.optimizer.lr"] == 2e-3 and frame.loc[1, "summary.loss"] == 0.5
    assert pd.isna(frame.loc[5, "summary.loss"])
    assert frame.loc[5, "failure_reason"] == "non-finite loss at step 3"
    assert frame["duration_s"].ge(0).all()


def test_metrics_frame_is_long_and_pivots_into_curves(db: str) -> None:
    with results.open_store(db) as store:
        frame = results.metrics_frame(store, [1, 3], keys=["knn_top1"])
    assert list(frame.columns) == ["run_id", "key", "step", "epoch", "value", "time"]
    curves = frame.pivot_table(index="epoch", columns="run_id", values="value")
    assert curves.loc[2, 1] == pytest.approx(0.66) and curves.loc[1, 3] == pytest.approx(0.65)


def test_leaderboard_frame_matches_the_csv_report(db: str, tmp_path: Path) -> None:
    with results.open_store(db) as store:
        frame = results.leaderboard_frame(store)
        board = results.leaderboard(store)
    row = frame.set_index("method").loc["byol"]
    assert row["runs"] == 2 and row["knn_best"] == pytest.approx(0.75)
    assert row["knn_mean"] == pytest.approx(0.73) and row["knn_n"] == 2
    assert [g.key["method"] for g in board.groups] == ["byol"]
    assert main(["report", "--db", db, "--format", "csv", "-o", str(tmp_path / "r.csv")]) == 0
    from_cli = pd.read_csv(tmp_path / "r.csv")
    assert from_cli["knn_mean"].tolist() == pytest.approx(frame["knn_mean"].tolist())


def test_runs_list_prints_what_find_runs_returns(db: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "list", "--db", db, "--kind", "pretrain"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[1:]
    with results.open_store(db) as store:
        assert [int(r.split()[0]) for r in rows] == \
            [r.id for r in results.find_runs(store, kind="pretrain")]


def test_frames_without_pandas_name_the_extra(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas → ImportError
    with results.open_store(db) as store:
        assert len(results.find_runs(store)) == 5  # records need no pandas
        with pytest.raises(UserError, match=r"sslbench\[pandas\]"):
            results.runs_frame(store)


def test_the_notebook_example_of_the_docs_runs(repo: Path, workdir: Path,
                                               trained_run: Callable[..., int]) -> None:
    """Every ```python block of docs/python-api.md, in order, in one namespace: on the shipped
    example database, and on a run with a checkpoint as run 1 of ./sslbench.sqlite."""
    shutil.copy(repo / "results.sqlite.example", workdir / "results.sqlite.example")
    assert trained_run("sslbench.sqlite", workdir / "runs") == 1
    text = (repo / "docs" / "python-api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    assert len(blocks) >= 5
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "docs/python-api.md", "exec"), namespace)
    assert not namespace["board"].empty and namespace["curves"].shape[1] >= 2
    assert namespace["features"].shape == (8, 64)
