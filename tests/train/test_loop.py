"""The shared pretraining loop: schedule, optimizer groups, determinism, checkpoints, failures."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from sslbench.config import OptimizerConfig
from sslbench.data import load_dataset
from sslbench.errors import RunFailure, UserError
from sslbench.methods import build_method
from sslbench.resolve import resolve_config
from sslbench.train.checkpoint import load_checkpoint, save_checkpoint
from sslbench.train.device import resolve_device, seed_everything
from sslbench.train.loop import pretrain
from sslbench.train.optim import build_optimizer, build_scheduler, lr_factor


def test_lr_factor_warmup_then_cosine() -> None:
    total, warmup = 110, 10
    assert lr_factor(0, total, warmup, 0.0) == pytest.approx(0.1)
    assert lr_factor(9, total, warmup, 0.0) == pytest.approx(1.0)
    assert lr_factor(10, total, warmup, 0.0) == pytest.approx(1.0)
    assert lr_factor(60, total, warmup, 0.0) == pytest.approx(0.5)  # half way down the cosine
    assert lr_factor(110, total, warmup, 0.0) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(110, total, warmup, 0.1) == pytest.approx(0.1)
    # cosine shape: 0.5 * (1 + cos(pi * t))
    assert lr_factor(35, total, warmup, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_scheduler_drives_the_optimizer_lr() -> None:
    model = nn.Linear(3, 2)
    cfg = OptimizerConfig(name="sgd", lr=0.5, warmup_epochs=1.0)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, total_steps=8, steps_per_epoch=4)
    seen = []
    for _ in range(8):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[:4] == pytest.approx([0.125, 0.25, 0.375, 0.5])
    assert seen[4] == pytest.approx(0.5) and seen[7] < seen[5] < seen[4]


def test_no_weight_decay_on_biases_and_norms() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    opt = build_optimizer(model, OptimizerConfig(name="adamw", weight_decay=0.3))
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(model[0].weight)}
    assert isinstance(opt, torch.optim.AdamW)
    assert isinstance(build_optimizer(model, OptimizerConfig(name="sgd")), torch.optim.SGD)


def test_decay_1d_decays_biases_and_norms_too() -> None:
    # solo-learn's SimSiam: exclude_bias_n_norm_wd false, every parameter decays.
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    for name in ("sgd", "adamw", "lars"):
        opt = build_optimizer(model, OptimizerConfig(name=name, weight_decay=0.3, decay_1d=True))
        decayed = {id(p) for g in opt.param_groups if g["weight_decay"] == 0.3
                   for p in g["params"]}
        assert decayed == {id(p) for p in model.parameters()}
    # one SGD step on a bias with zero gradient: only the decay moves it, by lr · β · b
    for decay_1d, expected in ((False, 2.0), (True, 2.0 - 0.5 * 0.1 * 2.0)):
        layer = nn.Linear(1, 1)
        with torch.no_grad():
            layer.bias.fill_(2.0)
        opt = build_optimizer(layer, OptimizerConfig(name="sgd", lr=0.5, weight_decay=0.1,
                                                     decay_1d=decay_1d))
        layer.weight.grad, layer.bias.grad = torch.zeros(1, 1), torch.zeros(1)
        opt.step()
        assert layer.bias.item() == pytest.approx(expected)


def test_fixed_lr_groups_keep_their_lr() -> None:
    # SimSiam §4.3 (fix_pred_lr; solo-learn's static_lr): after warm-up and cosine steps the
    # predictor's group still has its initial lr, the others follow the schedule.
    cfg = resolve_config("simsiam", flags={"data.dataset": "synthetic"},
                         overrides=["method.predictor_fixed_lr=true", "optimizer.name=sgd",
                                    "optimizer.lr=0.4", "method.predictor_lr_mult=0.5"])
    method = build_method(cfg, 3)
    opt = build_optimizer(method, cfg.optimizer)
    sched = build_scheduler(opt, cfg.optimizer, total_steps=10, steps_per_epoch=2)
    predictor = {id(p) for p in method.predictor.parameters()}
    fixed = [g for g in opt.param_groups if {id(p) for p in g["params"]} <= predictor]
    others = [g for g in opt.param_groups if g not in fixed]
    assert fixed and others and all(g.get("fixed_lr") for g in fixed)
    for step in range(1, 8):
        opt.step()
        sched.step()
        factor = lr_factor(step, 10, 2, 0.0)
        assert all(g["lr"] == pytest.approx(0.2) for g in fixed)
        assert all(g["lr"] == pytest.approx(0.4 * factor) for g in others)
    assert others[0]["lr"] < 0.2
    state = sched.state_dict()  # a checkpoint keeps the planned total beside the fixed groups
    assert state["lr_lambdas"][0]["total_steps"] == 10
    # the default: every group scheduled, as before
    default = resolve_config("simsiam", flags={"data.dataset": "synthetic"})
    opt = build_optimizer(build_method(default, 3), default.optimizer)
    assert not any("fixed_lr" in g for g in opt.param_groups)


def test_resolve_device_rejects_missing_gpus() -> None:
    assert resolve_device(0) == torch.device("cpu")
    if torch.cuda.device_count() == 0:
        assert resolve_device(None) == torch.device("cpu")
        with pytest.raises(UserError, match="--gpus 1"):
            resolve_device(1)


def _run(tmp_path: Path, method: str, *overrides: str) -> tuple[float, dict[str, torch.Tensor]]:
    cfg = resolve_config(method, flags={"data.dataset": "synthetic"},
                         overrides=["train.epochs=1", *overrides])
    dataset = load_dataset("synthetic", None, seed=0)
    tmp_path.mkdir(exist_ok=True)
    seed_everything(cfg.train.seed)
    model = build_method(cfg, dataset.info.channels)
    result = pretrain(cfg, dataset, model, torch.device("cpu"), tmp_path, show_progress=False)
    return result.final_loss, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_same_seed_same_run(tmp_path: Path, method: str) -> None:
    loss_a, state_a = _run(tmp_path / "a", method)
    loss_b, state_b = _run(tmp_path / "b", method)
    assert loss_a == loss_b
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key], rtol=0, atol=0)
    loss_c, _ = _run(tmp_path / "c", method, "train.seed=1")
    assert loss_c != loss_a


def test_checkpoint_per_epoch_holds_everything_to_resume(tmp_path: Path) -> None:
    epochs_seen = []
    cfg = resolve_config("byol", flags={"data.dataset": "synthetic"}, overrides=["train.epochs=2"])
    dataset = load_dataset("synthetic", None, seed=0)
    model = build_method(cfg, dataset.info.channels)

    def hook(epoch: int, step: int, metrics: dict[str, float]) -> None:
        # The epoch's metrics are stored before its checkpoint: a resume never skips a record.
        epochs_seen.append(epoch)
        path = tmp_path / "checkpoint.pt"
        assert load_checkpoint(path)["epoch"] == epoch - 1 if epoch > 1 else not path.exists()

    result = pretrain(cfg, dataset, model, torch.device("cpu"), tmp_path, hook, False)
    assert epochs_seen == [1, 2]
    state = load_checkpoint(result.checkpoint)
    assert set(state) >= {"method", "optimizer", "scheduler", "epoch", "step", "rng"}
    assert (state["epoch"], state["batch"]) == (2, 0)
    assert state["step"] == result.steps == 2 * (1024 // 64)
    fresh = build_method(cfg, dataset.info.channels)
    fresh.load_state_dict(state["method"])
    for key, value in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value)


def test_corrupt_checkpoint_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"a": torch.ones(2)})
    assert not path.with_suffix(".pt.tmp").exists()
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(UserError, match="cannot be read"):
        load_checkpoint(path)
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_exploding_lr_fails_with_the_step(tmp_path: Path) -> None:
    with pytest.raises(RunFailure, match=r"non-finite loss at step \d+"):
        _run(tmp_path, "simclr", "optimizer.name=sgd", "optimizer.lr=1e30",
             "optimizer.warmup_epochs=0")


def test_gradient_clipping_bounds_the_update(tmp_path: Path) -> None:
    # With SGD (no momentum) and lr 1, one step moves the weights by exactly the clipped gradient.
    cfg = resolve_config("simclr", flags={"data.dataset": "synthetic"}, overrides=[
        "train.epochs=1", "optimizer.name=sgd", "optimizer.momentum=0", "optimizer.lr=1",
        "optimizer.weight_decay=0", "optimizer.warmup_epochs=0", "optimizer.grad_clip=1e-3",
        "train.batch_size=1024"])
    dataset = load_dataset("synthetic", None, seed=0)
    model = build_method(cfg, dataset.info.channels)
    start = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    pretrain(cfg, dataset, model, torch.device("cpu"), tmp_path, show_progress=False)
    end = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (end - start).norm().item() == pytest.approx(1e-3, rel=1e-3)


@pytest.mark.parametrize("compile_step", [False, True])
def test_the_loop_steps_through_the_prepared_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  compile_step: bool) -> None:
    """Every step goes through what `distributed.ddp.prepare` returns (DDP in a distributed run),
    also when `train.compile` is on: a step that bypassed it would not average gradients."""
    import sslbench.train.loop as loop_mod

    calls = []

    def prepare(method: nn.Module, device: torch.device, sync_batchnorm: bool = True):
        def step(views: list[torch.Tensor]):
            calls.append(views[0].shape[0])
            return method.training_step(views)

        return step

    monkeypatch.setattr(loop_mod, "prepare", prepare)
    monkeypatch.setattr(torch, "compile", lambda fn: fn)  # what matters is what gets compiled
    cfg = resolve_config("simclr", flags={"data.dataset": "synthetic", "train.epochs": 1,
                                          "train.compile": compile_step})
    dataset = load_dataset("synthetic", None, seed=0)
    seed_everything(0)
    model = build_method(cfg, dataset.info.channels)
    result = pretrain(cfg, dataset, model, torch.device("cpu"), tmp_path, show_progress=False)
    assert len(calls) == result.steps > 0
