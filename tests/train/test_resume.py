"""Resuming the loop from a checkpoint gives bit-for-bit the run that never stopped (CPU)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from sslbench.data import ImageDataset, load_dataset
from sslbench.errors import RunFailure, RunKilled
from sslbench.methods import build_method
from sslbench.resolve import resolve_config
from sslbench.train import checkpoint as ckpt
from sslbench.train.checkpoint import load_checkpoint, save_checkpoint
from sslbench.train.device import seed_everything
from sslbench.train.loop import pretrain

DEVICE = torch.device("cpu")


class StopAfter:
    """Stands in for StopSignals: a SIGTERM 'arrives' before the loop's ``n``-th look (it looks
    after every step and after every epoch's checkpoint)."""

    def __init__(self, n: int) -> None:
        self.n, self.looks = n, 0

    @property
    def received(self) -> signal.Signals | None:
        self.looks += 1
        return signal.SIGTERM if self.looks >= self.n else None

    @contextlib.contextmanager
    def deferring(self) -> Iterator[None]:
        yield


def _train(method: str, folder: Path, *, stop: StopAfter | None = None,
           resume: bool = False) -> tuple[torch.nn.Module, list[tuple[int, dict[str, float]]]]:
    cfg = resolve_config(method, flags={"data.dataset": "synthetic"},
                         overrides=["train.epochs=2", "train.batch_size=32", "model.width=8",
                                    "method.queue_size=64" if method in ("moco", "swav") else
                                    "train.log_every=1"])
    dataset = _small_dataset()
    folder.mkdir(exist_ok=True)
    seed_everything(cfg.train.seed)  # as the runner does, for a fresh run and a resumed one
    model = build_method(cfg, dataset.info.channels)
    logged: list[tuple[int, dict[str, float]]] = []
    state = load_checkpoint(folder / "checkpoint.pt") if resume else None
    pretrain(cfg, dataset, model, DEVICE, folder,
             lambda epoch, step, metrics: logged.append((epoch, metrics)), False,
             resume_from=state, stop=stop)  # type: ignore[arg-type]
    return model, logged


@functools.cache
def _small_dataset() -> ImageDataset:
    """128 synthetic training images: 4 steps of 32 an epoch, fast on a busy CPU."""
    full = load_dataset("synthetic", None, seed=0)
    return dataclasses.replace(full, train_images=full.train_images[:128],
                               train_labels=full.train_labels[:128])


def _without_timing(logged: list[tuple[int, dict[str, float]]]) -> list[tuple[int, dict]]:
    return [(e, {k: v for k, v in m.items() if k not in ("img_per_s", "epoch_s")})
            for e, m in logged]


def _assert_same_model(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key, value in sa.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, sb[key]), key
        else:  # get_extra_state of SwAV / DirectPred
            assert value == sb[key], key


# moco: queue + EMA target; swav: queue, host counters and the global RNG (small crops);
# directpred: host step counter + correlation buffer (the plain case: tests/cli/test_reliability).
@pytest.mark.parametrize("method", ["moco", "swav", "directpred"])
def test_stop_mid_epoch_then_resume_is_bit_exact(tmp_path: Path, method: str) -> None:
    reference, ref_logged = _train(method, tmp_path / "ref")
    # 128 images / 32 = 4 steps an epoch; looks: 4 steps + 1 end of epoch 1, then
    # step 5 and step 6: stopped after the 2nd of the 4 steps of epoch 2
    with pytest.raises(RunKilled, match="SIGTERM in epoch 2 at step 6"):
        _train(method, tmp_path / "cut", stop=StopAfter(7))
    saved = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert (saved["epoch"], saved["batch"], saved["step"]) == (1, 2, 6)
    resumed, logged = _train(method, tmp_path / "cut", resume=True)
    _assert_same_model(reference, resumed)
    assert _without_timing(logged) == _without_timing(ref_logged[1:])  # epoch 2, equal floats


def test_resume_at_an_epoch_boundary_is_bit_exact(tmp_path: Path) -> None:
    reference, ref_logged = _train("byol", tmp_path / "ref")
    with pytest.raises(RunKilled):
        _train("byol", tmp_path / "cut", stop=StopAfter(4))  # the last step of epoch 1
    saved = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert (saved["epoch"], saved["batch"], saved["step"]) == (0, 4, 4)
    resumed, logged = _train("byol", tmp_path / "cut", resume=True)
    _assert_same_model(reference, resumed)
    assert _without_timing(logged) == _without_timing(ref_logged)  # epoch 1's record, then 2


def test_epoch_generators_depend_on_seed_and_epoch_only() -> None:
    a_order, a_aug = ckpt.epoch_generators(3, 2, DEVICE)
    b_order, b_aug = ckpt.epoch_generators(3, 2, DEVICE)
    assert torch.equal(torch.randperm(50, generator=a_order), torch.randperm(50, generator=b_order))
    assert torch.equal(torch.rand(4, generator=a_aug), torch.rand(4, generator=b_aug))
    other, _ = ckpt.epoch_generators(3, 3, DEVICE)
    assert not torch.equal(torch.randperm(50, generator=other),
                           torch.randperm(50, generator=ckpt.epoch_generators(3, 2, DEVICE)[0]))


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    import random

    import numpy as np

    seed_everything(5)
    save_checkpoint(tmp_path / "c.pt", {"method": {}, "rng": ckpt.capture_rng(DEVICE)})
    expected = (random.random(), float(np.random.rand()), torch.rand(3))
    seed_everything(99)
    ckpt.restore_rng(load_checkpoint(tmp_path / "c.pt")["rng"], DEVICE)
    got = (random.random(), float(np.random.rand()), torch.rand(3))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])


def test_full_disk_keeps_the_previous_checkpoint(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"method": {"w": torch.ones(3)}})
    before = path.read_bytes()

    def full(obj: object, f: Path) -> None:
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", full)
    with pytest.raises(RunFailure, match="No space left on device"):
        save_checkpoint(path, {"method": {"w": torch.zeros(3)}})
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_a_pickled_object_is_refused(tmp_path: Path) -> None:
    """weights_only: a checkpoint that would run code on load is rejected, not executed."""
    import pickle

    from sslbench.errors import UserError

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"method": Path("/etc/passwd")}))
    with pytest.raises(UserError, match="cannot be read"):
        load_checkpoint(path)


def test_a_checkpoint_without_the_new_counters_still_evaluates() -> None:
    """SwAV checkpoints written before its counters were saved load for evaluation."""
    cfg = resolve_config("swav", flags={"data.dataset": "synthetic"})
    model = build_method(cfg, 1)
    old = {k: v for k, v in model.state_dict().items() if not k.endswith("_extra_state")}
    fresh = build_method(cfg, 1)
    ckpt.load_method_state(fresh, old)
    assert torch.equal(fresh.prototypes.weight, model.prototypes.weight)
