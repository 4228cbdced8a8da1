"""`sslbench report` (leaderboard, exports, plots) and `sslbench runs compare` on fabricated DBs."""

from __future__ import annotations

import csv
import io
import json
import statistics
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sslbench.cli import main
from sslbench.errors import UserError
from sslbench.report.export import render, to_markdown
from sslbench.report.fabricate import fabricate
from sslbench.report.plots import write_plots
from sslbench.report.table import Filters, build_leaderboard, load_runs, protocol_of
from sslbench.store import Store

PROV = {"git_commit": "abc", "git_dirty": False, "host": "test", "versions": {}}


def _pretrain(store: Store, method: str, seed: int, scores: dict[str, float], *,
              ema: float = 0.99, status: str = "COMPLETED", dataset: str = "fashion-mnist",
              sweep: str | None = None) -> int:
    config = {"method": {"name": method, "ema_decay": ema},
              "train": {"epochs": 3, "batch_size": 256}}
    rid = store.create_run(kind="pretrain", method=method, dataset=dataset, config=config,
                           seed=seed, backbone="convnet", provenance=PROV, sweep_id=sweep)
    for epoch in (1, 2, 3):
        store.log_metrics(rid, {"loss": 3.0 / epoch, "img_per_s": 1000.0}, epoch=epoch)
    store.update_summary(rid, loss=1.0, img_per_s=1000.0 + seed)
    store.finish_run(rid, status)
    for protocol, score in scores.items():
        kind, cfg = {"linear": ("linear", {"protocol": "linear"}),
                     "knn": ("knn", {"protocol": "knn", "k": 200}),
                     "semi:10": ("semisup", {"labels_pct": 10})}[protocol]
        cid = store.create_run(kind=kind, method=method, dataset=dataset, config=cfg, seed=seed,
                               parent_id=rid, provenance=PROV)
        store.update_summary(cid, **{f"{kind}_top1": score})
        store.finish_run(cid, "COMPLETED")
    return rid


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "r.sqlite")
    with Store.open(path) as store:
        for seed, (lin, knn) in enumerate([(0.80, 0.70), (0.82, 0.74), (0.84, 0.72)]):
            _pretrain(store, "byol", seed, {"linear": lin, "knn": knn},
                      ema=0.99 if seed < 2 else 0.996)
        rid = _pretrain(store, "simclr", 0, {"linear": 0.60, "semi:10": 0.5})
        # a re-evaluation of the same encoder: the newest linear result counts
        cid = store.create_run(kind="linear", method="simclr", dataset="fashion-mnist",
                               config={"protocol": "linear"}, seed=0, parent_id=rid,
                               provenance=PROV)
        store.update_summary(cid, linear_top1=0.86)
        store.finish_run(cid, "COMPLETED")
        # a failed evaluation is ignored, a failed pretraining is left out by default
        bad = store.create_run(kind="knn", method="simclr", dataset="fashion-mnist",
                               config={"protocol": "knn"}, seed=0, parent_id=rid, provenance=PROV)
        store.update_summary(bad, knn_top1=0.99)
        store.finish_run(bad, "FAILED", failure_reason="boom")
        _pretrain(store, "simclr", 1, {"linear": 0.10}, status="FAILED")
        _pretrain(store, "vicreg", 0, {"linear": 0.5}, dataset="cifar10", sweep="s1")
    return path


def _board(db: str, **kw: object):  # type: ignore[no-untyped-def]
    group_by = kw.pop("group_by", ())
    sort = kw.pop("sort", None)
    with Store.open(db, create=False) as store:
        runs = load_runs(store, Filters(**kw))  # type: ignore[arg-type]
    return build_leaderboard(runs, group_by=group_by, sort=sort)  # type: ignore[arg-type]


def test_best_mean_std_and_seed_counts(db: str) -> None:
    board = _board(db, dataset="fashion-mnist")
    assert board.protocols == ["linear", "knn", "semi:10"]
    simclr, byol = board.groups  # sorted by linear mean: simclr 0.86 before byol 0.82
    lin = byol.stats["linear"]
    assert (lin.n, lin.best, lin.mean) == (3, 0.84, pytest.approx(0.82))
    assert lin.std == pytest.approx(statistics.stdev([0.80, 0.82, 0.84]))
    assert byol.stats["knn"].best == 0.74 and byol.seeds == 3
    assert simclr.stats["linear"].values == [0.86]  # newest re-evaluation, failed run left out
    assert simclr.stats["linear"].std is None
    assert "knn" not in simclr.stats  # the FAILED kNN evaluation does not count
    assert simclr.stats["semi:10"].mean == 0.5
    assert [g.key["method"] for g in board.groups] == ["simclr", "byol"]  # 86 > 82


def test_filters_and_sorting(db: str) -> None:
    assert {g.key["method"] for g in _board(db).groups} == {"byol", "simclr", "vicreg"}
    assert [g.key["method"] for g in _board(db, dataset="cifar10").groups] == ["vicreg"]
    assert [g.key["method"] for g in _board(db, sweep="s1").groups] == ["vicreg"]
    assert [g.key["method"] for g in _board(db, method=("byol",)).groups] == ["byol"]
    failed = _board(db, status="FAILED").groups
    assert [(g.key["method"], g.stats["linear"].mean) for g in failed] == [("simclr", 0.10)]
    assert len(_board(db, status=None, method=("simclr",)).groups[0].runs) == 2
    assert _board(db, until=datetime(2000, 1, 1, tzinfo=UTC)).groups == []
    assert len(_board(db, since=datetime(2000, 1, 1, tzinfo=UTC)).groups) == 3
    by_name = _board(db, dataset="fashion-mnist", sort="method")
    assert [g.key["method"] for g in by_name.groups] == ["byol", "simclr"]
    by_knn = _board(db, dataset="fashion-mnist", sort="knn")
    assert by_knn.groups[0].key["method"] == "byol"  # the only row with kNN comes first
    # a protocol sorts within each dataset and budget: rows are only compared there
    assert [g.key["dataset"] for g in _board(db, sort="knn").groups] == [
        "cifar10", "fashion-mnist", "fashion-mnist"]
    with pytest.raises(UserError, match="--sort"):
        _board(db, sort="nope")


def test_group_by_config_key(db: str) -> None:
    board = _board(db, method=("byol",), group_by=("method.ema_decay",))
    rows = {g.key["method.ema_decay"]: g.stats["linear"] for g in board.groups}
    assert rows[0.99].values == [0.80, 0.82] and rows[0.996].values == [0.84]
    assert board.groups[0].key["method.ema_decay"] == 0.996  # highest mean (0.84) first
    with pytest.raises(UserError, match="no run has that config key"):
        _board(db, group_by=("method.nope",))


def test_sorted_by_mean_descending(db: str) -> None:
    board = _board(db, method=("byol",), group_by=("method.ema_decay",))
    means = [g.stats["linear"].mean for g in board.groups]
    assert means == sorted(means, reverse=True)


def test_exports_parse_back(db: str) -> None:
    board = _board(db, dataset="fashion-mnist")
    rows = list(csv.DictReader(io.StringIO(render(board, "csv"))))
    assert [r["method"] for r in rows] == ["simclr", "byol"]
    assert float(rows[1]["linear_mean"]) == pytest.approx(0.82)
    assert rows[1]["linear_n"] == "3" and rows[0]["knn_mean"] == ""

    data = json.loads(render(board, "json"))
    assert data["protocols"] == ["linear", "knn", "semi:10"]
    assert data["rows"][1]["linear_std"] == pytest.approx(0.02)
    assert data["rows"][1]["linear_ci95"] == pytest.approx(4.302653 * 0.02 / 3 ** 0.5)
    assert data["rows"][1]["linear_vs_best"] is None  # against simclr's single run: no test
    assert data["rows"][1]["run_ids"] == [1, 4, 7]

    lines = to_markdown(board).strip().splitlines()
    assert len(lines) == 2 + len(board.groups)
    assert len({line.count("|") for line in lines}) == 1
    assert "| 82.00 ± 4.97 (n=3) | n=1 |" in lines[3] and "| 86.00 (n=1) | best |" in lines[2]

    page = render(board, "html")
    assert page.startswith("<!DOCTYPE html>") and "<table>" in page and "</html>" in page
    assert page.count("<tr>") == 1 + len(board.groups) and "byol" in page


def test_plots_are_pngs_with_one_series_per_row(db: str, tmp_path: Path) -> None:
    board = _board(db)
    with Store.open(db, create=False) as store:
        written = write_plots(store, board, tmp_path / "plots")
    assert written == {"curve_loss.png": 3, "accuracy_by_method.png": 3}
    for name in written:
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_cli(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--db", db, "--dataset", "fashion-mnist"]) == 0
    out = capsys.readouterr().out
    assert "byol" in out and "82.00 ± 4.97 (n=3)" in out
    out_file = tmp_path / "t.md"
    assert main(["report", "--db", db, "-f", "markdown", "-o", str(out_file),
                 "--protocol", "linear", "--plots", str(tmp_path / "p")]) == 0
    assert out_file.read_text().startswith(
        "| method | dataset | budget | runs | seeds | linear mean ± 95% CI | linear vs best |")
    assert (tmp_path / "p" / "accuracy_by_method.png").is_file()
    assert main(["report", "--db", db, "-f", "json", "--group-by", "method.ema_decay"]) == 0
    assert len(json.loads(capsys.readouterr().out)["rows"]) == 4


@pytest.mark.parametrize(("argv", "needle"), [
    (["--format", "xml"], "--format"),
    (["--status", "weird"], "--status"),
    (["--since", "yesterday"], "--since"),
    (["--group-by", "nope.key"], "--group-by"),
    (["--sort", "nope"], "--sort"),
])
def test_report_bad_input(db: str, capsys: pytest.CaptureFixture[str], argv: list[str],
                          needle: str) -> None:
    assert main(["report", "--db", db, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0]


def test_report_missing_db_is_not_created(tmp_path: Path) -> None:
    assert main(["report", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert not (tmp_path / "none.sqlite").exists()


def test_runs_compare(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "compare", "1", "7", "--db", db, "--json"]) == 0
    diff = json.loads(capsys.readouterr().out)
    assert diff["config"] == {"method.ema_decay": [0.99, 0.996]}
    assert diff["metrics"]["linear top1"] == [0.80, 0.84]
    assert diff["metrics"]["knn top1"] == [0.70, 0.72]
    assert main(["runs", "compare", "1", "10", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "method.name" in out and "+6.00 pt" in out  # simclr 0.86 vs byol 0.80


def test_protocol_labels() -> None:
    assert protocol_of("semisup", {"labels_pct": 1}) == "semi:1"
    assert protocol_of("semisup", {"labels": "10%"}) == "semi:10"
    assert protocol_of("knn", {}) == "knn"
    assert protocol_of("supervised", {}) is None


def test_fabricate_and_bench(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Store.open(str(tmp_path / "f.sqlite")) as store:
        assert fabricate(store, 14) == 56
        board = build_leaderboard(load_runs(store, Filters(dataset="fabricated")))
    assert len(board.groups) == 7 and all(len(g.runs) == 2 for g in board.groups)
    assert board.protocols == ["linear", "knn", "semi:10"]
    bench_db = tmp_path / "bench.sqlite"
    assert main(["bench", "report", "--runs", "50", "--repeats", "1", "--db", str(bench_db)]) == 0
    assert "report of 50 pretrain runs" in capsys.readouterr().out
    with Store.open(str(bench_db), create=False) as store:
        (run,) = store.list_runs(kind="bench")
    assert run.status == "COMPLETED" and run.summary["report_s"] > 0


def _sweep_db(path: str, split: str | None = "val") -> dict[int, int]:
    """A fabricated study: the objective depends on the EMA decay only; one PRUNED, one FAILED
    trial; the objective measured on ``split`` (None: not recorded, as before sslbench had a
    validation split). Returns {trial number: run id}."""
    ids = {}
    with Store.open(path) as store:
        params = [(0.99, 1e-3, 256), (0.9, 3e-3, 128), (0.95, 1e-2, 512), (0.999, 3e-4, 256),
                  (0.97, 2e-3, 128), (0.93, 5e-3, 512), (0.91, 1e-3, 128), (0.98, 1e-3, 256)]
        for number, (ema, lr, batch) in enumerate(params):
            status = "PRUNED" if number == 6 else "FAILED" if number == 7 else "COMPLETED"
            config = {"method": {"name": "byol", "ema_decay": ema},
                      "optimizer": {"lr": lr}, "train": {"epochs": 2, "batch_size": batch,
                                                         "output_dir": f"runs/{number}"},
                      "data": {"dataset": "fashion-mnist"},
                      **({} if split is None else {"eval": {"split": split}})}
            rid = store.create_run(kind="trial", method="byol", dataset="fashion-mnist",
                                   config=config, seed=0, backbone="convnet", provenance=PROV,
                                   sweep_id="byol-fm", trial_number=number)
            epochs = 1 if status == "PRUNED" else 2
            for epoch in range(epochs):
                store.log_metrics(rid, {"loss": 1.0, "val_knn_top1": 0.5 + 0.1 * epoch},
                                  epoch=epoch)
            if status == "COMPLETED":
                store.update_summary(rid, objective=0.5 + 0.4 * (ema - 0.9) / 0.099)
            store.finish_run(rid, status, failure_reason="nan" if status == "FAILED" else None)
            ids[number] = rid
        _pretrain(store, "byol", 0, {"linear": 0.8})  # not part of the sweep
    return ids


def test_sweep_report_ranks_trials_and_finds_the_important_parameter(tmp_path: Path) -> None:
    from sslbench.report.sweep import build_sweep_report

    path = str(tmp_path / "s.sqlite")
    ids = _sweep_db(path)
    with Store.open(path, create=False) as store:
        report = build_sweep_report(store, "byol-fm")
    assert report.params == ["method.ema_decay", "optimizer.lr", "train.batch_size"]
    assert [t.number for t in report.trials] == [3, 0, 4, 2, 5, 1, 6, 7]  # by objective, then
    assert [t.status for t in report.trials][-2:] == ["PRUNED", "FAILED"]  # pruned, failed
    assert report.best is not None and report.best.run_id == ids[3]
    assert report.best.objective == pytest.approx(0.9)
    pruned = report.trials[-2]
    assert pruned.objective is None and pruned.last_knn == pytest.approx(0.5)
    assert pruned.epochs == 1 and report.trials[0].epochs == 2
    assert report.log_scale == {"method.ema_decay": False, "optimizer.lr": True,
                                "train.batch_size": False}
    assert set(report.importance) == set(report.params)
    assert sum(report.importance.values()) == pytest.approx(1.0)
    assert max(report.importance, key=report.importance.get) == "method.ema_decay"


def test_a_sweep_is_never_ranked_by_a_test_objective(tmp_path: Path) -> None:
    """Trials recorded before the validation split chose on the test split: listed, not
    ranked, and none of them is the best."""
    from sslbench.report.sweep import build_sweep_report, display_rows

    path = str(tmp_path / "s.sqlite")
    _sweep_db(path, split=None)
    with Store.open(path, create=False) as store:
        report = build_sweep_report(store, "byol-fm")
    assert report.best is None and report.importance == {}
    header, rows = display_rows(report)
    assert header[4] == "objective (val)"
    assert {row[0] for row in rows} == {"-"}  # no rank
    assert rows[0][4] == "90.00 (test)"


def test_sweep_report_exports_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    path = str(tmp_path / "s.sqlite")
    _sweep_db(path)
    base = ["report", "--db", path, "--sweep", "byol-fm"]
    assert main([*base, "-f", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["trial"] for r in rows] == ["3", "0", "4", "2", "5", "1", "6", "7"]
    assert float(rows[0]["objective"]) == pytest.approx(0.9) and rows[-1]["objective"] == ""
    assert main([*base, "-f", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["study"] == "byol-fm" and len(data["trials"]) == 8
    assert data["trials"][0]["method.ema_decay"] == 0.999
    assert main([*base, "-f", "markdown"]) == 0
    md = capsys.readouterr().out
    tables = [line for line in md.splitlines() if line.startswith("|")]
    assert len(tables) == (2 + 8) + (2 + 3)  # trials table, importance table
    assert main([*base, "-f", "html", "-o", str(tmp_path / "s.html")]) == 0
    page = (tmp_path / "s.html").read_text()
    assert page.count("<table>") == 2 and "method.ema_decay" in page
    assert main([*base, "--plots", str(tmp_path / "figs")]) == 0
    err = capsys.readouterr().err
    assert "sweep_params.png (3 series)" in err and "sweep_importance.png (3 series)" in err
    for name in ("sweep_params.png", "sweep_importance.png"):
        assert (tmp_path / "figs" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the leaderboard proper leaves the trials to `--sweep`: one byol run, not nine
    assert main(["report", "--db", path, "-f", "json"]) == 0
    assert [r["runs"] for r in json.loads(capsys.readouterr().out)["rows"]] == [1]
    assert main(["report", "--db", path, "--sweep", "nope"]) == 2
    assert "no trials of that study (studies: byol-fm)" in capsys.readouterr().err
