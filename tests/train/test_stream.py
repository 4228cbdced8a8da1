"""Pretraining on streamed shards: the loop resumes mid-epoch bit-exact (from a SIGTERM or from
a periodic checkpoint), two gloo ranks read disjoint shards whose union is the epoch, and a real
`sslbench pretrain` killed with SIGKILL resumes to the run that was never killed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sslbench.cli import main
from sslbench.data import load_run_dataset
from sslbench.data.prepare import PrepareOptions, prepare
from sslbench.errors import RunKilled
from sslbench.methods import build_method
from sslbench.resolve import resolve_config
from sslbench.store import RunRecord, Store
from sslbench.train.checkpoint import load_checkpoint
from sslbench.train.device import seed_everything
from sslbench.train.loop import pretrain

DEVICE = torch.device("cpu")


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic dataset (1024 train images) in 8 shards of 128."""
    out = tmp_path_factory.mktemp("shards") / "synthetic"
    prepare("synthetic", out, PrepareOptions(shard_size=128, workers=0), echo=print)
    return out


def _overrides(shards: Path) -> list[str]:
    return ["data.dataset=synthetic", f"data.prepared={shards}", "data.storage=stream",
            "data.workers=0", "data.shuffle_buffer=200", "train.batch_size=64",
            "model.width=8", "train.epochs=2"]


class StopAt:
    """Stands in for StopSignals: SIGTERM 'arrives' at the loop's ``n``-th look."""

    def __init__(self, n: int) -> None:
        self.n, self.looks = n, 0

    @property
    def received(self) -> object:
        import signal

        self.looks += 1
        return signal.SIGTERM if self.looks >= self.n else None

    def deferring(self) -> object:
        import contextlib

        return contextlib.nullcontext()


def _train(shards: Path, folder: Path, *extra: str, stop: StopAt | None = None,
           resume_from: Path | None = None, on_step: object = None
           ) -> tuple[dict[str, torch.Tensor], list[tuple[int, dict[str, float]]]]:
    cfg = resolve_config("byol", flags={}, overrides=[*_overrides(shards), *extra])
    dataset = load_run_dataset(cfg.data, cfg.train.seed)
    assert dataset.shards is not None
    folder.mkdir(exist_ok=True)
    seed_everything(cfg.train.seed)
    model = build_method(cfg, dataset.info.channels)
    logged: list[tuple[int, dict[str, float]]] = []
    state = load_checkpoint(resume_from) if resume_from is not None else None
    pretrain(cfg, dataset, model, DEVICE, folder,
             lambda epoch, step, m: logged.append((epoch, {k: v for k, v in m.items()
                                                           if k not in ("img_per_s", "epoch_s")})),
             False, resume_from=state, stop=stop, on_step_end=on_step)  # type: ignore[arg-type]
    return model.state_dict(), logged


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_stopped_mid_epoch_the_stream_resumes_bit_exact(tmp_path: Path, shards: Path) -> None:
    reference, ref_logged = _train(shards, tmp_path / "ref")
    # 16 steps an epoch; looks: 16 steps + 1 end of epoch 1, then steps 17 to 20
    with pytest.raises(RunKilled, match="in epoch 2 at step 20"):
        _train(shards, tmp_path / "cut", stop=StopAt(21))
    saved = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert (saved["epoch"], saved["batch"]) == (1, 4)
    assert saved["stream"]["samples_done"] == 4 * 64 and saved["stream"]["world"] == 1
    resumed, logged = _train(shards, tmp_path / "cut",
                             resume_from=tmp_path / "cut" / "checkpoint.pt")
    _same(reference, resumed)
    assert logged == ref_logged[1:]


def test_a_periodic_checkpoint_resumes_bit_exact(tmp_path: Path, shards: Path) -> None:
    """What SIGKILL leaves: the last of the ``train.checkpoint_every`` checkpoints."""
    kept = tmp_path / "kept.pt"

    def keep_step_6(step: int) -> None:  # the checkpoint of step 5 is on disk at step 6
        if step == 6:
            shutil.copy(tmp_path / "a" / "checkpoint.pt", kept)

    reference, ref_logged = _train(shards, tmp_path / "a", "train.checkpoint_every=5",
                                   on_step=keep_step_6)
    assert (load_checkpoint(kept)["epoch"], load_checkpoint(kept)["batch"]) == (0, 5)
    resumed, logged = _train(shards, tmp_path / "b", "train.checkpoint_every=5",
                             resume_from=kept)
    _same(reference, resumed)
    assert logged == ref_logged


def test_a_checkpoint_of_another_stream_is_refused(tmp_path: Path, shards: Path) -> None:
    from sslbench.errors import UserError

    with pytest.raises(RunKilled):
        _train(shards, tmp_path / "cut", stop=StopAt(3))
    with pytest.raises(UserError, match="buffer differ"):
        _train(shards, tmp_path / "cut", "data.shuffle_buffer=10",
               resume_from=tmp_path / "cut" / "checkpoint.pt")


# -- processes -----------------------------------------------------------------------------------

_RANK_SCRIPT = textwrap.dedent("""
    import json, sys, torch, torch.distributed as dist
    from sslbench.config import DataConfig
    from sslbench.data import load_prepared
    from sslbench.data.stream import ShardBatches
    dist.init_process_group("gloo")
    data = load_prepared(DataConfig(dataset="synthetic", prepared=sys.argv[1], storage="stream"))
    stream = ShardBatches(data.shards, local_batch=32, world=2, device=torch.device("cpu"),
                          shuffle_buffer=100, workers=0, decode_on_device=False)
    order = torch.Generator().manual_seed(int(sys.argv[3]))
    batches = list(stream.epoch(order))
    needed = stream.steps_per_epoch * 32
    seen = [i for i, _, _ in stream.samples(order.initial_seed())][:needed]
    json.dump({"seen": seen, "batches": len(batches)},
              open(f"{sys.argv[2]}/rank{dist.get_rank()}.json", "w"))
    dist.destroy_process_group()
""")


@pytest.mark.multiprocess
@pytest.mark.parametrize("seed", [1, 2])
def test_two_gloo_ranks_read_disjoint_shards_whose_union_is_the_epoch(
    tmp_path: Path, shards: Path, repo: Path, seed: int
) -> None:
    script = tmp_path / "rank.py"
    script.write_text(_RANK_SCRIPT)
    # the child trains with the threads this process trains the reference with: the same float
    # reductions, so the same run to the bit
    env = {**os.environ, "PYTHONPATH": str(repo),
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                    "--master-port", str(29500 + seed + os.getpid() % 500), str(script),
                    str(shards), str(tmp_path), str(seed)],
                   check=True, env=env, capture_output=True, timeout=300)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["batches"] for r in ranks] == [16, 16]  # 4 shards of 128 each, batches of 32
    index = np.load(shards / "train.index.npy").tolist()
    shard_of = {key: position // 128 for position, key in enumerate(index)}
    seen = [set(r["seen"]) for r in ranks]
    assert all(len(s) == 512 for s in seen)
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(1024))
    shard_sets = [{shard_of[k] for k in s} for s in seen]
    assert not shard_sets[0] & shard_sets[1] and len(shard_sets[0]) == 4


def _cli_argv(folder: Path, shards: Path) -> list[str]:
    return ["pretrain", "simclr", "--epochs", "2", "--eval", "none", "--quiet", "--gpus", "0",
            "--db", str(folder / "r.sqlite"), f"train.output_dir={folder / 'runs'}",
            *_overrides(shards)[:-1], "train.checkpoint_every=2"]


def _curves(run: RunRecord) -> dict[tuple[str, int | None], float]:
    return {(m.key, m.epoch): m.value for m in run.metrics
            if m.key not in ("img_per_s", "epoch_s")}


def _run(folder: Path) -> RunRecord:
    with Store.open(str(folder / "r.sqlite"), create=False) as store:
        return store.get_run(1)


@pytest.mark.multiprocess
def test_kill_9_mid_epoch_on_streamed_data_then_resume_gives_the_same_run(
    tmp_path: Path, shards: Path, repo: Path
) -> None:
    (tmp_path / "ref").mkdir()
    assert main(_cli_argv(tmp_path / "ref", shards)) == 0
    reference = _run(tmp_path / "ref")
    folder = tmp_path / "cut"
    folder.mkdir()
    # the child trains with the threads this process trains the reference with: the same float
    # reductions, so the same run to the bit
    env = {**os.environ, "PYTHONPATH": str(repo),
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    env.pop("SSLBENCH_DB", None)
    proc = subprocess.Popen([sys.executable, "-m", "sslbench", *_cli_argv(folder, shards)],
                            cwd=folder, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while True:  # until a mid-epoch checkpoint of epoch 1 is on disk (runs/<run uid>/)
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        found = list((folder / "runs").glob("*/checkpoint.pt"))
        if found:
            state = load_checkpoint(found[0])
            if state["epoch"] == 0 and state["batch"] > 0:
                break
        time.sleep(0.02)
    proc.kill()  # SIGKILL: no handler, no last word
    proc.wait()
    assert main(["resume", "1", "--db", str(folder / "r.sqlite"), "--quiet"]) == 0
    run = _run(folder)
    assert (run.status, run.resumes) == ("COMPLETED", 1)
    assert _curves(run) == _curves(reference)
    assert run.summary["loss"] == reference.summary["loss"]
