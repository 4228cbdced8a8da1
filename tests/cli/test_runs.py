"""`sslbench runs list` and `sslbench runs show` on a database filled through the store API."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sslbench.cli import main
from sslbench.cli.runs import format_duration, format_metric, format_size
from sslbench.store import Store

PROVENANCE = {
    "git_commit": "feedbeef" * 5,
    "git_dirty": False,
    "host": "node7",
    "versions": {"python": "3.11.7", "torch": "2.14.1"},
}


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A database with a pretraining run, its linear probe, and a failed run."""
    path = tmp_path / "runs.sqlite"
    checkpoint = tmp_path / "last.pt"
    checkpoint.write_bytes(b"\0" * 3000)
    with Store.open(str(path)) as store:
        pretrain = store.create_run(
            kind="pretrain",
            method="byol",
            dataset="fashion-mnist",
            config={"train": {"epochs": 2}},
            seed=7,
            backbone="convnet",
            device="cpu",
            provenance=PROVENANCE,
        )
        for epoch in range(2):
            store.log_metrics(
                pretrain,
                {"loss": 0.5 - epoch / 10, "knn_top1": 0.7 + epoch / 10},
                step=100 * (epoch + 1),
                epoch=epoch,
            )
        store.add_artifact(pretrain, "checkpoint", checkpoint)
        store.update_summary(pretrain, loss=0.4)
        store.finish_run(pretrain, "COMPLETED")
        linear = store.create_run(
            kind="linear",
            method="byol",
            dataset="fashion-mnist",
            config={},
            seed=7,
            parent_id=pretrain,
            provenance=PROVENANCE,
        )
        store.update_summary(linear, linear_top1=0.8734)
        store.finish_run(linear, "COMPLETED")
        failed = store.create_run(
            kind="pretrain",
            method="simclr",
            dataset="mnist",
            config={},
            seed=0,
            provenance=PROVENANCE,
        )
        store.finish_run(failed, "FAILED", failure_reason="non-finite loss at step 3")
    return str(path)


def test_list(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "list", "--db", db]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0].split()[:6] == ["id", "kind", "parent", "method", "dataset", "status"]
    assert "linear_top1" in lines[0] and "loss" in lines[0]
    assert [line.split()[0] for line in lines[1:]] == ["3", "2", "1"]
    assert "87.34%" in out and "0.4" in out and "FAILED" in out and "0:00:00" in out


def test_list_filters(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "list", "--db", db, "--status", "failed"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["3"]
    assert main(["runs", "list", "--db", db, "--kind", "linear", "--method", "byol"]) == 0
    assert [row.split()[0] for row in capsys.readouterr().out.strip().splitlines()[1:]] == ["2"]
    assert main(["runs", "list", "--db", db, "--dataset", "cifar10"]) == 0
    assert capsys.readouterr().out.strip() == "no runs"


def test_list_rejects_an_unknown_status(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "list", "--db", db, "--status", "done"]) == 2
    err = capsys.readouterr().err
    assert "--status" in err and len(err.strip().splitlines()) == 1


def test_list_on_an_empty_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Store.open(str(tmp_path / "empty.sqlite")).close()
    assert main(["runs", "list", "--db", str(tmp_path / "empty.sqlite")]) == 0
    assert capsys.readouterr().out.strip() == "no runs"


def test_list_on_a_missing_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.sqlite"
    assert main(["runs", "list", "--db", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no database at") and len(err.splitlines()) == 1
    assert not missing.exists()


def test_show(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "show", "1", "--db", db]) == 0
    out = capsys.readouterr().out
    for expected in (
        "pretrain",
        "convnet",
        "COMPLETED",
        "feedbeeffeed",
        "node7",
        "cpu x 1",
        "epochs: 2",
        "torch 2.14.1",
        "knn_top1",
        "80.00%",
        "last.pt",
        "2.9 KiB",
    ):
        assert expected in out, expected
    assert re.search(r"^children +2\b", out, re.MULTILINE)
    epoch_rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["0"], ["1"])]
    assert epoch_rows == [["0", "70.00%", "0.5"], ["1", "80.00%", "0.4"]]


def test_show_failed_run(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "show", "3", "--db", db]) == 0
    assert "non-finite loss at step 3" in capsys.readouterr().out


def test_show_json(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "show", "1", "--db", db, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["id"] == 1 and record["children"] == [2]
    assert record["config"] == {"train": {"epochs": 2}} and record["seed"] == 7
    assert len(record["metrics"]) == 4 and record["artifacts"][0]["size_bytes"] == 3000
    assert record["summary"] == {"loss": 0.4} and record["duration_s"] >= 0


def test_show_missing_run(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "show", "99", "--db", db]) == 2
    assert capsys.readouterr().err == "error: no run with id 99 in DB\n"


def test_db_from_environment(
    db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SSLBENCH_DB", db)
    assert main(["runs", "show", "2"]) == 0
    assert "linear" in capsys.readouterr().out


def test_formatting() -> None:
    assert format_metric("linear_top1", 0.87346) == "87.35%"
    assert format_metric("loss", 0.123456) == "0.1235"
    assert format_metric("loss", float("nan")) == "nan"
    assert format_duration(3725.4) == "1:02:05" and format_duration(None) == "-"
    assert format_size(512) == "512 B" and format_size(3 * 1024**3) == "3.0 GiB"
    assert format_metric("val_accuracy", 0.5) == "50.00%"
    assert format_metric("accum_steps", 1.0) == "1"
