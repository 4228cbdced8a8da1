"""Compute budgets: a run planned for its budget ends there with every schedule at its final value
(a fake clock), also when it is resumed; step and FLOP budgets; bad budgets are bad input."""

from __future__ import annotations

import dataclasses
import functools
import time
import types
from pathlib import Path

import pytest
import torch

from sslbench.cli import main
from sslbench.config.budget import budget_label, format_seconds, parse_duration
from sslbench.data import ImageDataset, load_dataset
from sslbench.errors import ConfigError, RunKilled, UserError
from sslbench.methods import build_method, method_names
from sslbench.resolve import resolve_config
from sslbench.store import Store
from sslbench.train.budget import WallClockPlan
from sslbench.train.checkpoint import load_checkpoint
from sslbench.train.device import seed_everything
from sslbench.train.loop import PretrainResult, pretrain

DEVICE = torch.device("cpu")
LR, MIN_RATIO = 1e-3, 0.1


@functools.cache
def _small_dataset() -> ImageDataset:
    """128 synthetic training images: 4 steps of 32 an epoch."""
    full = load_dataset("synthetic", None, seed=0)
    return dataclasses.replace(full, train_images=full.train_images[:128],
                               train_labels=full.train_labels[:128])


class FakeClock:
    """Training time that advances only inside the method's training step: the first two steps
    take ``first_s`` each (one-off costs, as on a GPU), every later one ``step_s``, or
    ``slow_s`` after step ``slow_from`` (the machine slows down). It starts when the loop first
    reads it (the FLOP count before that takes no time)."""

    def __init__(self, first_s: float, step_s: float, slow_from: int | None = None,
                 slow_s: float = 0.0) -> None:
        self.now, self.steps, self.first_s, self.step_s = 0.0, 0, first_s, step_s
        self.slow_from, self.slow_s = slow_from, slow_s
        self.started = False

    def __call__(self) -> float:
        self.started = True
        return self.now

    def tick(self) -> None:
        if self.started:
            self.steps += 1
            if self.steps <= 2:
                self.now += self.first_s
            elif self.slow_from is not None and self.steps > self.slow_from:
                self.now += self.slow_s
            else:
                self.now += self.step_s


def _train(method: str, folder: Path, *overrides: str, clock: FakeClock | None = None,
           stop: object = None, resume: bool = False
           ) -> tuple[PretrainResult, list[dict[str, float]]]:
    cfg = resolve_config(method, flags={"data.dataset": "synthetic"}, overrides=[
        "train.batch_size=32", "model.width=4", f"optimizer.lr={LR}",
        f"optimizer.min_lr_ratio={MIN_RATIO}", "train.plan_steps=6",
        *(["method.queue_size=64"] if method in ("moco", "swav") else []), *overrides])
    dataset = _small_dataset()
    folder.mkdir(exist_ok=True)
    seed_everything(cfg.train.seed)
    model = build_method(cfg, dataset.info.channels)
    if clock is not None:
        def timed_step(self, views: list[torch.Tensor]):  # type: ignore[no-untyped-def]
            clock.tick()
            return type(self).training_step(self, views)

        # bound, so that the copy the FLOP count steps is bound to itself
        model.training_step = types.MethodType(timed_step, model)
    logged: list[dict[str, float]] = []
    state = load_checkpoint(folder / "checkpoint.pt") if resume else None
    result = pretrain(cfg, dataset, model, DEVICE, folder,
                      lambda epoch, step, metrics: logged.append(metrics), False,
                      resume_from=state, stop=stop,  # type: ignore[arg-type]
                      clock=clock or time.perf_counter)
    return result, logged


def test_wall_clock_budget_ends_at_the_budget_with_every_schedule_at_its_end(
        tmp_path: Path) -> None:
    # 2 steps of 3 s, then 1 s a step: timed over steps 3-6, the total is fixed at step 6
    # (6 + ⌊(19 − 10) / 1⌋ = 15 steps); the slow first steps count against the budget.
    clock = FakeClock(first_s=3.0, step_s=1.0)
    result, logged = _train("byol", tmp_path, "train.budget_s=19", clock=clock)
    assert result.steps == 15 and result.epochs == 4  # 4 steps an epoch, the last one cut
    assert result.train_s == pytest.approx(19.0, rel=0.03)
    assert logged[-1]["lr"] == pytest.approx(LR * MIN_RATIO)  # the cosine ended, not cut off
    assert logged[-1]["ema_decay"] == pytest.approx(1.0)  # BYOL's τ reached ema_final
    lrs = [m["lr"] for m in logged]  # at each epoch's end: the warm-up's, then down the cosine
    assert lrs[0] == pytest.approx(LR) and lrs == sorted(lrs, reverse=True)


def test_a_slower_machine_plans_fewer_steps_for_the_same_budget(tmp_path: Path) -> None:
    fast, _ = _train("simclr", tmp_path / "a", "train.budget_s=2",
                     clock=FakeClock(first_s=0.1, step_s=0.1))
    slow, logged = _train("simclr", tmp_path / "b", "train.budget_s=2",
                          clock=FakeClock(first_s=0.2, step_s=0.2))
    assert (fast.steps, slow.steps) == (20, 10)
    assert fast.train_s == pytest.approx(2.0) and slow.train_s == pytest.approx(2.0)
    assert logged[-1]["lr"] == pytest.approx(LR * MIN_RATIO)


def test_a_run_whose_steps_slow_down_is_re_planned_to_end_at_its_budget(tmp_path: Path) -> None:
    # 0.25 s a step; planned at step 6: 6 + ⌊(20 − 1.5) / 0.25⌋ = 80 steps, re-planned at steps
    # 20, 40 and 60. From step 21 a step takes 0.5 s (the first plan would train 35 s): step 20
    # still sees 0.25 s (80 steps), step 40 times 0.5 s over steps 21-40 and has 5 s left,
    # 40 + 5 / 0.5 = 50 steps; the cosine ends there.
    clock = FakeClock(first_s=0.25, step_s=0.25, slow_from=20, slow_s=0.5)
    result, logged = _train("simclr", tmp_path, "train.budget_s=20", clock=clock)
    assert result.steps == 50
    assert result.train_s == pytest.approx(20.0)
    assert logged[-1]["lr"] == pytest.approx(LR * MIN_RATIO)


def test_re_planning_times_windows_after_the_first_plan() -> None:
    plan = WallClockPlan(budget_s=100.0, plan_steps=10)
    timed = [step for step in range(1, 200) if plan.measures(step) and
             plan.total(step, 0.5 * step) is not None]  # 0.5 s a step: 200 steps fit
    assert timed == [10, 50, 100, 150] and plan.totals == [200] * 4 and plan.finished
    short = WallClockPlan(budget_s=10.0, plan_steps=10)  # 20 steps: no window is long enough
    assert [s for s in range(1, 40) if short.measures(s) and short.total(s, 0.5 * s)] == [10]
    assert short.finished


class StopAfter:
    """A SIGTERM 'arrives' before the loop's ``n``-th look (after every step and epoch)."""

    def __init__(self, n: int) -> None:
        self.n, self.looks = n, 0

    @property
    def received(self):  # type: ignore[no-untyped-def]
        import signal

        self.looks += 1
        return signal.SIGTERM if self.looks >= self.n else None

    def deferring(self):  # type: ignore[no-untyped-def]
        import contextlib

        return contextlib.nullcontext()


def test_a_resumed_budget_run_keeps_its_planned_total(tmp_path: Path) -> None:
    reference, ref_logged = _train("moco", tmp_path / "ref", "train.budget_s=5",
                                   clock=FakeClock(0.25, 0.25))
    assert reference.steps == 20
    with pytest.raises(RunKilled):  # stopped in epoch 3, after the total was planned at step 6
        _train("moco", tmp_path / "cut", "train.budget_s=5", clock=FakeClock(0.25, 0.25),
               stop=StopAfter(12))
    saved = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert saved["scheduler"]["lr_lambdas"][0]["total_steps"] == 20
    assert saved["train_s"] == pytest.approx(0.25 * saved["step"])
    # resumed on a machine twice as slow: the plan stands (the checkpoint holds it)
    resumed, logged = _train("moco", tmp_path / "cut", "train.budget_s=5",
                             clock=FakeClock(0.5, 0.5), resume=True)
    assert resumed.steps == 20 and logged[-1]["lr"] == ref_logged[-1]["lr"]
    expected = load_checkpoint(reference.checkpoint)["method"]
    for key, value in load_checkpoint(resumed.checkpoint)["method"].items():
        assert torch.equal(value, expected[key]), key


def test_step_and_flop_budgets(tmp_path: Path) -> None:
    steps, logged = _train("simsiam", tmp_path / "steps", "train.budget_steps=10")
    assert steps.steps == 10 and steps.epochs == 3
    assert logged[-1]["lr"] == pytest.approx(LR * MIN_RATIO)
    per_step = steps.flops_per_image * 32
    assert per_step > 0
    flops, _ = _train("simsiam", tmp_path / "flops", f"train.budget_flops={7.5 * per_step}")
    assert flops.steps == 7 and flops.flops_per_image == steps.flops_per_image


def test_a_warm_up_longer_than_the_budget_leaves_room_for_the_cosine(tmp_path: Path) -> None:
    # 10 warm-up epochs are 40 steps; a 20-step budget caps the warm-up at 10 % of it, 2 steps
    result, logged = _train("simclr", tmp_path, "train.budget_steps=20",
                            "optimizer.warmup_epochs=10")
    assert result.steps == 20
    assert load_checkpoint(result.checkpoint)["scheduler"]["lr_lambdas"][0]["warmup_steps"] == 2
    lrs = [m["lr"] for m in logged]  # at each epoch's end: down the cosine, to its end
    assert lrs == sorted(lrs, reverse=True) and lrs[0] < LR
    assert lrs[-1] == pytest.approx(LR * MIN_RATIO)


@pytest.mark.parametrize("method", method_names())
def test_every_method_trains_to_a_wall_clock_budget(tmp_path: Path, method: str) -> None:
    result, logged = _train(method, tmp_path, "train.budget_s=2.5",
                            clock=FakeClock(0.25, 0.25))
    assert result.steps == 10 and result.train_s == pytest.approx(2.5)
    assert logged[-1]["lr"] == pytest.approx(LR * MIN_RATIO)
    if "ema_decay" in logged[-1]:
        assert logged[-1]["ema_decay"] == pytest.approx(1.0)


def test_budget_text() -> None:
    assert [parse_duration(t) for t in ("10m", "90s", "1h30m", "1.5h", "600", " 2m 30s ")] == [
        600, 90, 5400, 5400, 600, 150]
    assert [format_seconds(s) for s in (600, 90, 5400, 20, 1.5)] == [
        "10m", "1m30s", "1h30m", "20s", "1.5s"]
    for bad in ("10x", "m", "-5m", "0", "1m-", "inf"):
        with pytest.raises(UserError, match="--budget"):
            parse_duration(bad)
    assert budget_label({"epochs": 3}) == "3 epochs"
    assert budget_label({"epochs": 3, "budget_s": 600.0}) == "10m"
    assert budget_label({"budget_steps": 5000}) == "5000 steps"
    assert budget_label({"budget_flops": 2e15}) == "2e+15 FLOP"


def test_two_budgets_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="one compute budget"):
        resolve_config("simclr", overrides=["train.budget_s=60", "train.budget_steps=10"])


@pytest.mark.parametrize("argv", [
    ["pretrain", "--budget", "10x"], ["pretrain", "--budget", "0s"],
    ["pretrain", "--budget", "1m", "--budget-steps", "10"], ["pretrain", "--budget-steps", "0"],
    ["pretrain", "--budget-flops", "-1"], ["pretrain", "--seeds", "0"],
    ["pretrain", "--seeds", "1,1"], ["pretrain", "--seeds", "a,b"],
    ["pretrain", "data.val_fraction=0.6"], ["sweep", "--budget", "soon"],
    ["report", "--budget", "a while"],
])
def test_bad_budgets_and_seeds_are_one_line_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    db = tmp_path / "r.sqlite"
    command, *options = argv
    target = [] if command == "report" else ["simclr"]
    if command == "report":
        Store.open(str(db)).close()  # an empty database: only the option is wrong
    before = db.read_bytes() if db.exists() else None
    assert main([command, *target, "--db", str(db), *options]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert (db.read_bytes() if db.exists() else None) == before


@pytest.mark.multiprocess
def test_two_cpu_workers_plan_the_same_total(workdir: Path) -> None:
    """Each rank times its own steps; they plan from the mean of the ranks' step times, so both
    stop at the same step (a disagreement would leave one rank waiting in a collective)."""
    db = workdir / "r.sqlite"
    assert main(["pretrain", "simclr", "--dataset", "synthetic", "--procs", "2", "--budget",
                 "3s", "--db", str(db), "--quiet", "--eval", "knn", "train.batch_size=32",
                 "train.plan_steps=4", "eval.diagnostics.enabled=false"]) == 0
    with Store.open(str(db), create=False) as store:
        run = store.get_run(1)
    saved = load_checkpoint(Path(run.run_dir or "") / "checkpoint.pt")
    assert run.status == "COMPLETED" and run.world_size == 2
    assert saved["scheduler"]["lr_lambdas"][0]["total_steps"] == run.summary["steps"] >= 4
    assert [m.value for m in run.metrics if m.key == "lr"][-1] == pytest.approx(0.0, abs=1e-12)


def test_seeds_run_a_group_and_print_its_interval(workdir: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    db = str(workdir / "r.sqlite")
    assert main(["pretrain", "simclr", "--dataset", "synthetic", "--db", db, "--quiet",
                 "--seeds", "2", "--seed", "5", "--budget-steps", "4", "--eval", "knn",
                 "model.width=4", "eval.diagnostics.enabled=false"]) == 0
    out = capsys.readouterr().out
    assert "runs 1, 3 (seeds 5, 6) of simclr: knn " in out and "(n=2)" in out
    with Store.open(db, create=False) as store:
        runs = store.list_runs(kind="pretrain")
    assert sorted(r.seed for r in runs) == [5, 6]
    assert {r.config["train"]["budget_steps"] for r in runs} == {4}
    assert all(r.summary["steps"] == 4 for r in runs)
