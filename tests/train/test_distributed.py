"""Distributed training: 2 CPU workers (gloo) started by the elastic launcher take exactly the
step a single process takes on the concatenated batch; sharding, launch planning, failures."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from sslbench.config import OptimizerConfig
from sslbench.distributed import collectives, ddp, launch
from sslbench.distributed.batchnorm import GlobalBatchNorm, convert_batchnorm, revert_batchnorm
from sslbench.distributed.launch import (
    LaunchOptions,
    LaunchPlan,
    WorkerFailure,
    first_failure,
    plan_launch,
)
from sslbench.errors import RunFailure, UserError
from sslbench.methods import build_method, method_names
from sslbench.resolve import resolve_config
from sslbench.train.device import seed_everything
from sslbench.train.optim import base_lr, build_optimizer

WORLD = 2
BATCH = 8  # global: 4 images per worker
TINY = ["model.width=4", "model.projector_hidden_dim=16", "model.projector_dim=8",
        "model.projector_layers=2", "optimizer.name=sgd", "optimizer.lr=0.1",
        "optimizer.momentum=0.9", "optimizer.weight_decay=1e-4"]
# Every registered method is a case (a new one is covered without editing this file); these keep
# a method's state small or switch on the state that all ranks feed (queues, prototypes).
SMALL = {
    "mocov3": ["method.predictor_hidden_dim=8"],
    "swav": ["method.num_prototypes=6", "method.freeze_prototypes_steps=0",
             "method.queue_size=16"],
    "byol": ["method.predictor_hidden_dim=8"],
    "moco": ["method.queue_size=16", "method.symmetric=true"],
    "simsiam": ["method.predictor_hidden_dim=8"],
    "dino": ["method.num_prototypes=6", "method.freeze_prototypes_steps=0"],
    "infomax": ["method.encoder_hidden_dim=16", "method.embedding_dim=8"],
}
# Variants that exercise other state: (label, method, overrides).
VARIANTS = [("swav-frozen-prototypes", "swav", ["method.num_prototypes=6"])]
CASES = [(name, name, SMALL.get(name, [])) for name in method_names()] + VARIANTS
# ER's vMF KDE (κ = 1/h², exponentials of κ·cosines) amplifies the rounding of sums reduced in
# another order: 2.5e-5 apart after the gather, where per-worker KDEs were 4.3 apart
TOLERANCE = {"er": 1e-4}
# InfoMax's encoders are sized for the dataset's images (the synthetic set's 28 × 28 halves)
FULL_SIZE = {"infomax": 28}
STEPS = 2  # the second step sees what the first left: EMA targets, queues, BN statistics


def _views(steps: int, num_views: int, size: int = 12) -> list[list[torch.Tensor]]:
    """Pre-made views of the global batch, the same in every process (no augmentation): two of
    ``size`` × ``size``, then the small crops (6 × 6) of a multi-crop method."""
    gen = torch.Generator().manual_seed(1)
    return [[torch.randn(BATCH, 1, size if v < 2 else 6, size if v < 2 else 6, generator=gen)
             for v in range(num_views)] for _ in range(steps)]


def _train(method_name: str, overrides: list[str]) -> dict[str, torch.Tensor]:
    """STEPS optimizer steps of the loop's step (prepare → step → backward → optimizer → the
    method's end-of-step update) on this rank's part of each global batch; the state after."""
    cfg = resolve_config(method_name, flags={"data.dataset": "synthetic"},
                         overrides=[*TINY, *overrides])
    seed_everything(0)
    method = build_method(cfg, 1).train()
    training_step = ddp.prepare(method, torch.device("cpu"))
    optimizer = build_optimizer(method, cfg.optimizer, BATCH)
    r, part = collectives.rank(), BATCH // collectives.world_size()
    views_per_step = _views(STEPS, cfg.augment.num_views, FULL_SIZE.get(method_name, 12))
    for step, views in enumerate(views_per_step, start=1):
        loss, _ = training_step([v[r * part:(r + 1) * part] for v in views])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        method.on_train_step_end(step, 10)
    ddp.release(method)
    # tensors, and the plain `_extra_state` of methods that keep host-side counters (SwAV, ...)
    return {k: v.detach().clone() if isinstance(v, torch.Tensor) else v
            for k, v in method.state_dict().items()}


def _parity_worker(out_dir: str) -> None:
    launch.init_worker(use_gpus=False)
    try:
        results: dict[str, object] = {label: _train(m, o) for label, m, o in CASES}
        order = torch.randperm(21, generator=torch.Generator().manual_seed(3))
        results["_shard"] = collectives.shard(order, BATCH)
        results["_order"] = order
        torch.save(results, Path(out_dir) / f"rank{dist.get_rank()}.pt")
    finally:
        launch.shutdown()


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Every case trained once by 2 gloo workers through the launcher; each rank's results."""
    out = tmp_path_factory.mktemp("parity")
    plan = LaunchPlan(WORLD, False, LaunchOptions())
    launch.launch(_parity_worker, (str(out),), plan)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.multiprocess
@pytest.mark.parametrize(("label", "method", "overrides"), CASES, ids=[c[0] for c in CASES])
def test_two_workers_step_as_one_process_on_the_whole_batch(
        two_workers: list[dict], label: str, method: str, overrides: list[str]) -> None:
    single = _train(method, overrides)
    for rank, results in enumerate(two_workers):
        got = results[label]
        assert got.keys() == single.keys()
        for key, expected in single.items():
            if not isinstance(expected, torch.Tensor):
                assert got[key] == expected, f"rank {rank} {key}"
            elif expected.dtype.is_floating_point:
                tol = TOLERANCE.get(method, 1e-5)
                torch.testing.assert_close(got[key], expected, rtol=tol, atol=tol,
                                           msg=lambda m, k=key, r=rank: f"rank {r} {k}: {m}")
            else:
                assert torch.equal(got[key], expected), f"rank {rank} {key}"
    # The step moved the weights (a trivially equal state would prove nothing)...
    seed_everything(0)
    cfg = resolve_config(method, flags={"data.dataset": "synthetic"}, overrides=[*TINY, *overrides])
    initial = build_method(cfg, 1).state_dict()
    moved = [k for k in initial if isinstance(initial[k], torch.Tensor)
             and initial[k].is_floating_point()
             and not torch.allclose(initial[k], single[k])]
    assert any(k.startswith("backbone.") for k in moved)
    if label == "swav-frozen-prototypes":  # ...except what the method freezes, under DDP too
        torch.testing.assert_close(two_workers[0][label]["prototypes.weight"],
                                   F.normalize(initial["prototypes.weight"], dim=1))


@pytest.mark.multiprocess
def test_shards_are_disjoint_and_make_up_each_global_batch(two_workers: list[dict]) -> None:
    order = two_workers[0]["_order"]
    shards = [results["_shard"] for results in two_workers]
    part = BATCH // WORLD
    assert all(s.shape == (2 * part,) for s in shards)  # 21 images: 2 full batches, tail dropped
    assert not set(shards[0].tolist()) & set(shards[1].tolist())
    for step in range(2):
        union = torch.cat([s[step * part:(step + 1) * part] for s in shards])
        assert torch.equal(union, order[step * BATCH:(step + 1) * BATCH])


def _failing_worker(message: str) -> None:
    launch.init_worker(use_gpus=False)
    try:
        if dist.get_rank() == 1:
            raise RunFailure(message)
        dist.barrier()  # rank 0 waits for rank 1, which never comes: its error is an echo
    except BaseException as exc:
        launch.record_failure(exc)
        raise SystemExit(1) from None
    finally:
        launch.shutdown()


@pytest.mark.multiprocess
def test_a_failing_worker_is_reported_with_its_rank_and_reason() -> None:
    plan = LaunchPlan(WORLD, False, LaunchOptions())
    with pytest.raises(WorkerFailure, match="worker rank 1 failed: out of cheese") as info:
        launch.launch(_failing_worker, ("out of cheese",), plan)
    assert info.value.rank == 1 and info.value.reason == "out of cheese"


# -- single-process parts ---------------------------------------------------------------------


def test_gather_and_shard_are_identities_in_one_process() -> None:
    x = torch.randn(5, 3, requires_grad=True)
    assert collectives.gather(x) is x
    order = torch.randperm(10)
    assert torch.equal(collectives.shard(order, 4), order[:8])
    assert collectives.world_size() == 1


def test_global_batchnorm_is_batchnorm_in_one_process_and_converts_back() -> None:
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten(),
                          nn.Linear(12, 4, bias=False), nn.BatchNorm1d(4, affine=False))
    reference = [p for p in model.parameters()]
    keys = model.state_dict().keys()
    x = torch.randn(6, 1, 4, 4)
    expected = model(x)
    convert_batchnorm(model)
    assert isinstance(model[1], GlobalBatchNorm) and isinstance(model[4], GlobalBatchNorm)
    assert list(model.parameters()) == reference  # the optimizer's parameters stay the same
    assert model.state_dict().keys() == keys  # a checkpoint loads into the plain model
    torch.testing.assert_close(model(x), expected)
    revert_batchnorm(model)
    assert type(model[1]) is nn.BatchNorm2d and type(model[4]) is nn.BatchNorm1d
    assert model[1].num_batches_tracked.item() == 2  # the buffers were shared all along


def test_plan_launch() -> None:
    one = LaunchOptions()
    assert plan_launch(None, 1, one, gpus_available=0) is None
    assert plan_launch(1, 1, one, gpus_available=1) is None
    cpu = plan_launch(None, 2, one, gpus_available=4)
    assert cpu == LaunchPlan(2, False, one) and cpu.world_size == 2
    gpu = plan_launch(4, 1, one, gpus_available=4)
    assert gpu is not None and gpu.use_gpus and gpu.world_size == 4
    two_nodes = LaunchOptions(nnodes=2, node_rank=1, master_addr="10.0.0.1")
    plan = plan_launch(1, 1, two_nodes, gpus_available=1)
    assert plan is not None and plan.world_size == 2 and plan.use_gpus
    for gpus, procs, options, match in [
        (8, 1, one, "--gpus 8: this machine has 4"),
        (2, 2, one, "choose one"),
        (None, 2, LaunchOptions(nnodes=2, node_rank=2), "--node-rank 2"),
        (None, 2, LaunchOptions(master_port=70000), "not a TCP port"),
    ]:
        with pytest.raises(UserError, match=match):
            plan_launch(gpus, procs, options, gpus_available=4)


def test_worker_device_and_backend() -> None:
    assert launch.worker_device(True, 3) == torch.device("cuda", 3)
    assert launch.worker_device(False, 3) == torch.device("cpu")
    assert launch.backend_for(torch.device("cuda", 0)) == "nccl"
    assert launch.backend_for(torch.device("cpu")) == "gloo"


def test_batch_must_split_across_workers() -> None:
    collectives.check_batch_split(256, 4)
    with pytest.raises(UserError, match="multiple of 3"):
        collectives.check_batch_split(256, 3)


def test_lr_scaling_follows_the_global_batch() -> None:
    assert base_lr(OptimizerConfig(lr=0.3), 1024) == 0.3
    linear = OptimizerConfig(lr=0.3, lr_scaling="linear", reference_batch_size=256)
    assert base_lr(linear, 1024) == pytest.approx(1.2)
    assert build_optimizer(nn.Linear(2, 2), linear, 512).param_groups[0]["lr"] == pytest.approx(0.6)


def _failure(local_rank: int, exitcode: int, error_file: str, message: str = "") -> SimpleNamespace:
    return SimpleNamespace(local_rank=local_rank, exitcode=exitcode, error_file=error_file,
                           message=message)


def test_first_failure_finds_the_root_cause(tmp_path: Path) -> None:
    def record(local_rank: int, message: str, time_ns: int) -> str:
        path = tmp_path / str(local_rank) / "error.json"
        path.parent.mkdir()
        path.write_text(json.dumps({"message": message, "timestamp": 0, "time_ns": time_ns}))
        return str(path)

    echo = record(0, "RuntimeError: Connection closed by peer", 20)
    record(1, "collapsed at epoch 2", 10)
    # The launcher saw rank 0 (base rank 4 on this node) exit first; rank 1 had failed before.
    found = first_failure({4: _failure(0, 1, echo)})
    assert (found.rank, found.reason) == (5, "collapsed at epoch 2")
    # A worker killed by a signal left no reason: it is the cause.
    killed = first_failure({4: _failure(0, 1, echo),
                            5: _failure(1, -9, "<N/A>", "Signal 9 (SIGKILL) received by PID 7")})
    assert killed.rank == 5 and "SIGKILL" in killed.reason
    bare = first_failure({0: _failure(0, 3, "<N/A>", "To enable traceback see: ...")})
    assert str(bare) == "worker rank 0 failed: exit code 3"


def test_record_failure_writes_the_launchers_error_file(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(path))
    launch.record_failure(ValueError("bad value"))
    data = json.loads(path.read_text())
    assert data["message"] == "ValueError: bad value" and data["time_ns"] > 0
    launch.record_failure(UserError("no such dataset"))
    assert json.loads(path.read_text())["message"] == "no such dataset"
    assert os.environ["TORCHELASTIC_ERROR_FILE"] == str(path)
