"""On the real Fashion-MNIST, through the CLI (slow): a group of seeds at a wall-clock budget, and a
sweep at a budget chosen on the validation split and confirmed on the test split; the leaderboard
shows each group's interval and compares the rows at their budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sslbench.cli import main
from sslbench.store import Store
from sslbench.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

SHORT = ["eval.linear.epochs=5", "eval.knn.monitor_train_size=2000",
         "eval.diagnostics.enabled=false"]


def test_seeds_and_a_confirmed_sweep_at_one_budget(tmp_path: Path, fmnist_dir: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "r.sqlite")
    common = ["--data-dir", str(fmnist_dir), "--db", db]
    assert main(["pretrain", "simclr", *common, "--quiet", "--budget", "20s", "--seeds", "2",
                 "--eval", "linear,knn", f"train.output_dir={tmp_path / 'runs'}", *SHORT]) == 0
    assert "(seeds 0, 1) of simclr: linear" in capsys.readouterr().out
    sets = [f"--set={kv}" for kv in ("train.budget_s=15", f"train.output_dir={tmp_path / 't'}",
                                     *SHORT)]
    assert main(["sweep", "byol", *common, "--trials", "2", "--study", "byol-fm", "--quiet",
                 "--confirm", "2", *sets]) == 0
    assert "confirmed on the test split" in capsys.readouterr().out

    with Store.open(db, create=False) as store:
        pretrain = store.list_runs(kind="pretrain")
        trials = store.list_runs(kind="trial")
        for run in pretrain + trials:
            assert run.status == "COMPLETED"
            # the total last planned (after the first 20 steps, then at 1/4, 1/2, 3/4) is the
            # total trained (the checkpoint keeps it), and the lr ended at the end of its cosine
            saved = load_checkpoint(Path(run.run_dir or "") / "checkpoint.pt")
            assert saved["scheduler"]["lr_lambdas"][0]["total_steps"] == run.summary["steps"]
            assert run.summary["steps"] >= 20 and run.summary["train_flops"] > 0
            lr = [m.value for m in store.get_run(run.id).metrics if m.key == "lr"]
            assert lr[-1] == pytest.approx(0.0, abs=1e-12)  # optimizer.min_lr_ratio = 0
        for trial in trials:
            assert {c.config["split"] for c in store.children(trial.id)
                    if c.kind != "pretrain"} == {"val"}
        assert sorted(r.seed for r in pretrain if r.method == "byol") == [1, 2]

    assert main(["report", "--db", db, "-f", "json"]) == 0
    rows = {(r["method"], r["budget"]): r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert set(rows) == {("simclr", "20s"), ("byol", "15s")}
    simclr = rows["simclr", "20s"]
    assert simclr["linear_n"] == 2 and simclr["linear_ci95"] > 0
    assert simclr["linear_vs_best"] == "best"  # the only row at its budget
    assert rows["byol", "15s"]["sweep"].startswith("byol-fm, trial ")
