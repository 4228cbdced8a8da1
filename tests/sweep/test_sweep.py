"""`sslbench sweep`: search spaces, trials recorded once in Optuna and in the run table, pruning,
recovery after a killed worker, and the PostgreSQL path."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from sslbench.cli import main
from sslbench.errors import ConfigError
from sslbench.store import Store
from sslbench.sweep.space import load_space, parse_space, shipped_spaces_dir, space_for
from sslbench.sweep.study import open_storage

SPACE = {
    "method": "simclr",
    "objective": "knn",
    "trials": 6,
    "fixed": {"data.dataset": "synthetic", "train.epochs": 1, "eval.knn.k": 20,
              "eval.knn.monitor_train_size": 512, "eval.diagnostics.enabled": False},
    "pruner": {"name": "median", "startup_trials": 2, "warmup_epochs": 0},
    "params": {
        "optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "method.temperature": {"type": "float", "low": 0.1, "high": 0.5},
        "train.batch_size": {"type": "categorical", "choices": [64, 128]},
    },
}



def _space_file(folder: Path, **changes: object) -> Path:
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump({**SPACE, **changes}))
    return path


def _check_consistent(db: str, storage: str | None, study: str, budget: int) -> list[object]:
    """Every Optuna trial has exactly one run row with the same number and a matching state."""
    with Store.open(db, create=False) as store:
        optuna_storage, _ = open_storage(storage, store.url)
        trials = optuna.load_study(study_name=study, storage=optuna_storage).get_trials()
        runs = [r for r in store.list_runs(kind="trial") if r.sweep_id == study]
    counted = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == budget
    numbers = [r.trial_number for r in runs]
    assert len(numbers) == len(set(numbers)), "a trial was recorded twice"
    assert sorted(numbers) == sorted(t.number for t in trials if "run_id" in t.user_attrs)
    by_number = {r.trial_number: r for r in runs}
    expected = {TrialState.COMPLETE: "COMPLETED", TrialState.PRUNED: "PRUNED",
                TrialState.FAIL: "FAILED"}
    for t in trials:
        run = by_number[t.number]
        assert t.user_attrs["run_id"] == run.id
        assert run.status == expected[t.state], (t.number, t.state, run.status)
        for key, value in t.params.items():
            section, _, name = key.partition(".")
            assert run.config[section][name] == pytest.approx(value)
        if t.state == TrialState.COMPLETE:
            assert run.summary["objective"] == pytest.approx(t.value)
    return trials


def test_every_method_has_a_valid_space_with_its_defaults_inside() -> None:
    """A shipped file (sweeps/METHOD.yaml) or, for a method without one, the default space."""
    from sslbench.methods import method_names
    from sslbench.sweep.worker import SweepJob, baseline_params, check_job

    files = {f.stem for f in shipped_spaces_dir().glob("*.yaml")}
    assert files <= set(method_names())
    for name in method_names():
        space = space_for(name)
        assert space.method == name and space.params
        assert (space.source == f"{name}.yaml") == (name in files)
        check_job(SweepJob(name, space, None, None))  # every bound builds a valid config
        baseline, why_not = baseline_params(space)
        assert baseline is not None, f"{space.source}: {why_not}"
        assert set(baseline) == {p.key for p in space.params}


def test_the_exploration_spaces_are_valid_with_their_defaults_inside() -> None:
    """sweeps/explore/*.yaml and the fashion-mnist-15m campaign's spaces (given with --space;
    not shipped in the wheel): the campaign has one for every method but SimCLR, whose study is
    the exploration."""
    from sslbench.methods import method_names
    from sslbench.sweep.worker import SweepJob, baseline_params, check_job

    sweeps = Path(__file__).parents[2] / "sweeps"
    campaign = sorted((sweeps / "fashion-mnist-15m").glob("*.yaml"))
    assert {p.stem for p in campaign} == set(method_names()) - {"simclr"}
    files = sorted((sweeps / "explore").glob("*.yaml")) + campaign
    for path in files:
        space = load_space(path)
        check_job(SweepJob(path.stem, space, None, None))
        baseline, why_not = baseline_params(space)
        assert baseline is not None, f"{path.name}: {why_not}"


@pytest.mark.parametrize(("change", "needle"), [
    ({"objective": "loss"}, "objective"),
    ({"params": {}}, "params"),
    ({"params": {"optimizer.lr": {"type": "float", "low": 1, "high": 0.1}}}, "low"),
    ({"params": {"optimizer.lr": {"type": "float", "low": 0, "high": 1, "log": True}}}, "log"),
    ({"params": {"x": {"type": "normal"}}}, "type"),
    ({"params": {"x": {"type": "categorical", "choices": []}}}, "choices"),
    ({"trials": 0}, "trials"),
    ({"pruner": "bayes"}, "pruner"),
    ({"colour": "red"}, "unknown key"),
])
def test_malformed_spaces_are_one_line_errors(change: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as info:
        parse_space({**SPACE, **change}, source="t.yaml")
    assert "\n" not in str(info.value) and str(info.value).startswith("search space t.yaml")


def test_sweep_bad_input_exit_2_and_nothing_written(workdir: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    bad = workdir / "bad.yaml"
    bad.write_text("method: simclr\nparams: [1, 2\n")
    cases = [
        ["sweep", "simclr", "--space", str(bad)],
        ["sweep", "simclr", "--space", str(workdir / "none.yaml")],
        ["sweep", "byol", "--space", str(_space_file(workdir))],  # a simclr space
        ["sweep", "simclr", "--space", str(_space_file(workdir)), "--set", "optimizer.lr=-1"],
        ["sweep", "simclr", "--space", str(_space_file(
            workdir, params={"optimizer.lr": {"type": "float", "low": -1.0, "high": 1.0}}))],
        ["sweep", "status"],
        ["sweep", "nosuchmethod"],
    ]
    for argv in cases:
        assert main([*argv, "--db", str(workdir / "r.sqlite")]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (argv, err)
    assert not (workdir / "r.sqlite").exists()
    assert not list(workdir.glob("*.optuna.log"))


@pytest.mark.multiprocess
def test_two_workers_record_every_trial_once(workdir: Path) -> None:
    db = str(workdir / "r.sqlite")
    argv = ["sweep", "simclr", "--space", str(_space_file(workdir)), "--db", db, "--workers", "2",
            "--quiet"]
    assert main(argv) == 0
    trials = _check_consistent(db, None, "simclr-synthetic", 6)
    assert len(trials) == 6
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == 6, "two workers proposed the same parameters"
    # the journal file sits beside the results DB; re-running the finished study runs nothing
    assert (workdir / "r.optuna.log").is_file()
    assert main(argv) == 0
    assert len(_check_consistent(db, None, "simclr-synthetic", 6)) == 6


def test_pruned_trials_are_pruned_in_both(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import sslbench.sweep.study as study_mod

    # A pruner that stops every trial at its first report (kNN top-1 is always below 2).
    monkeypatch.setattr(study_mod, "make_pruner",
                        lambda space: optuna.pruners.ThresholdPruner(lower=2.0))
    db = str(workdir / "r.sqlite")
    space = _space_file(workdir, trials=3, fixed={**SPACE["fixed"], "train.epochs": 2})
    assert main(["sweep", "simclr", "--space", str(space), "--db", db, "--quiet",
                 "--study", "pruned"]) == 0
    trials = _check_consistent(db, None, "pruned", 3)
    assert [t.state for t in trials] == [TrialState.PRUNED] * 3
    with Store.open(db, create=False) as store:
        runs = store.list_runs(kind="trial")
        assert all("pruned at epoch 1" in (r.failure_reason or "") for r in runs)
        # pruned after one of its two epochs: one epoch of metrics, no evaluation child
        run = store.get_run(runs[0].id)
        assert {m.epoch for m in run.metrics} == {1} and store.children(run.id) == []
    assert main(["sweep", "status", "pruned", "--db", db]) == 0
    assert "pruned 3" in capsys.readouterr().out


@pytest.mark.multiprocess
def test_killed_worker_is_resumed_without_loss_or_duplicates(
    workdir: Path, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = workdir / "r.sqlite"
    space = _space_file(workdir, trials=3, fixed={**SPACE["fixed"], "train.epochs": 3},
                        pruner="none")
    argv = ["sweep", "simclr", "--space", str(space), "--db", str(db), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen([sys.executable, "-m", "sslbench", *argv], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # wait until a trial is mid-training
            if db.exists():
                try:
                    with sqlite3.connect(db) as con:
                        row = con.execute(
                            "select count(*) from runs r join metrics m on m.run_id = r.id "
                            "where r.kind = 'trial' and r.status = 'RUNNING'").fetchone()
                except sqlite3.OperationalError:  # the file exists, its schema not yet
                    row = (0,)
                if row[0] > 0:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("no trial started in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    with sqlite3.connect(db) as con:  # as left: opening the Store would mark it KILLED
        (stuck,) = con.execute("select id, trial_number from runs where kind = 'trial' and "
                               "status = 'RUNNING'").fetchall()
    con.close()
    assert main(argv) == 0
    assert "left running by a dead worker" in capsys.readouterr().out
    trials = _check_consistent(str(db), None, "simclr-synthetic", 3)
    (dead,) = [t for t in trials if t.state == TrialState.FAIL]
    assert dead.number == stuck[1]
    retry = [t for t in trials if t.user_attrs.get("retry_of") == dead.number]
    assert len(retry) == 1 and retry[0].params == dead.params
    assert retry[0].state == TrialState.COMPLETE
    with Store.open(str(db), create=False) as store:
        lost = store.get_run(stuck[0])
    assert lost.status == "FAILED" and "worker died" in (lost.failure_reason or "")
    assert "last heartbeat" in (lost.failure_reason or "")  # when it was last seen alive


def test_sweep_best_prints_a_runnable_config(workdir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    db = str(workdir / "r.sqlite")
    space = _space_file(workdir, trials=2, pruner="none")
    assert main(["sweep", "simclr", "--space", str(space), "--db", db, "--quiet",
                 "--set", "method.temperature=0.3"]) == 0
    capsys.readouterr()
    assert main(["sweep", "best", "simclr-synthetic", "--db", db]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# best of study simclr-synthetic")
    assert "sslbench pretrain simclr" in out
    config = yaml.safe_load(out)
    assert config["method"]["temperature"] == 0.3  # --set fixed it for every trial
    assert main(["sweep", "best", "nosuch", "--db", db]) == 2
    # a recipe promises a test number: a study without confirmations has none to give
    recipe = workdir / "simclr.yaml"
    assert main(["sweep", "best", "simclr-synthetic", "--db", db, "--recipe-out",
                 str(recipe)]) == 2
    assert "--confirm 3" in capsys.readouterr().err and not recipe.exists()


def test_bad_confirmation_settings_stop_before_any_trial(workdir: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    db = workdir / "fresh.sqlite"
    space = _space_file(workdir, trials=1, pruner="none")
    base = ["sweep", "simclr", "--space", str(space), "--db", str(db), "--quiet"]
    assert main([*base, "--confirm-set", "train.budget_s=60"]) == 2
    assert "give --confirm N" in capsys.readouterr().err
    assert main([*base, "--confirm", "1", "--confirm-set", "train.nosuch=1"]) == 2
    assert "train.nosuch" in capsys.readouterr().err
    assert main([*base, "--confirm", "1", "--confirm-set", "train.budget_s=soon"]) == 2
    assert not db.exists()
    assert main(["sweep", "status", "x", "--recipe-out", str(workdir / "r.yaml")]) == 2


@pytest.mark.multiprocess
def test_sweep_on_postgresql(workdir: Path, pg_database: Callable[[str], str]) -> None:
    """Study and runs in ONE PostgreSQL database (the multi-machine set-up), two workers. sslbench
    keeps its Alembic version in its own table, so Optuna's `alembic_version` does not clash."""
    from sqlalchemy import create_engine, inspect

    url = pg_database(f"sweep_{uuid.uuid4().hex[:8]}")
    argv = ["sweep", "simclr", "--space", str(_space_file(workdir, trials=4)), "--db", url,
            "--storage", url, "--workers", "2", "--quiet"]
    assert main(argv) == 0
    trials = _check_consistent(url, url, "simclr-synthetic", 4)
    assert len(trials) == 4
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"runs", "metrics", "sslbench_alembic_version", "trials", "alembic_version"} <= tables
    assert main(["sweep", "status", "simclr-synthetic", "--db", url, "--storage", url]) == 0


def test_baseline_trial_runs_the_defaults_once() -> None:
    from sslbench.resolve import resolve_config
    from sslbench.sweep.worker import SweepJob, baseline_params, enqueue_baseline

    defaults = resolve_config("simclr", flags={"data.dataset": "synthetic"}).to_dict()
    batch = defaults["train"]["batch_size"]
    space = parse_space({**SPACE, "params": {**SPACE["params"], "train.batch_size": {
        "type": "categorical", "choices": [batch, 2 * batch]}}})
    expected = {"optimizer.lr": defaults["optimizer"]["lr"],
                "method.temperature": defaults["method"]["temperature"],
                "train.batch_size": batch}
    assert baseline_params(space) == (expected, "")

    study = optuna.create_study(direction="maximize")
    job = SweepJob("s", space, None, None)
    assert enqueue_baseline(study, job) == "trial 0 runs the defaults (the baseline to beat)"
    assert enqueue_baseline(study, job) is None  # once per study, also on re-runs
    from sslbench.sweep.study import suggest

    trial = study.ask()
    assert trial.number == 0 and suggest(trial, space) == pytest.approx(expected)
    assert enqueue_baseline(optuna.create_study(), SweepJob(
        "s", parse_space({**SPACE, "baseline": False}), None, None)) is None
    with pytest.raises(ConfigError, match="baseline must be true or false"):
        parse_space({**SPACE, "baseline": "yes"})


def test_a_resumed_study_does_not_replay_the_first_sessions_draws(tmp_path: Path) -> None:
    """Re-running the command re-creates the sampler; seeded as before, its random start-up
    trials would repeat the first session's parameters (seen on a real sweep)."""
    from sslbench.sweep.study import make_study, suggest

    space = parse_space({**SPACE, "baseline": False, "trials": 12})  # 4 random start-up trials
    storage, _ = open_storage(str(tmp_path / "j.log"), "sqlite:///unused.sqlite")
    first = make_study("s", space, storage)
    params = []
    for _ in range(2):
        trial = first.ask()
        params.append(suggest(trial, space))
        first.tell(trial, 0.5)
    resumed = make_study("s", space, storage)  # a new process running the same command
    again = suggest(resumed.ask(), space)
    assert again not in params
    assert resumed.user_attrs["trials"] == 12
    # resumed with --trials 3: `sweep status` shows the budget the study now runs to
    assert make_study("s", dataclasses.replace(space, trials=3), storage).user_attrs["trials"] == 3


def test_case23_a_baseline_outside_the_space_is_said_not_dropped_silently() -> None:
    """Issue 17, case 23: a default outside the space gives no baseline trial (rather than a
    clipped, made-up one), and the sweep says so and why."""
    from sslbench.resolve import resolve_config
    from sslbench.sweep.worker import SweepJob, enqueue_baseline

    lr = resolve_config("simclr", flags={"data.dataset": "synthetic"}).optimizer.lr
    narrow = parse_space({**SPACE, "params": {"optimizer.lr": {
        "type": "float", "low": 10 * lr, "high": 1.0}}})
    study = optuna.create_study(direction="maximize")
    said = enqueue_baseline(study, SweepJob("s", narrow, None, None))
    assert said is not None and said.startswith("no baseline trial")
    assert f"optimizer.lr={lr}" in said and "outside the space" in said
    assert study.get_trials() == []
