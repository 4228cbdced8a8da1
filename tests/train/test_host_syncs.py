"""The hot loop never waits for the device: calls that read a tensor's value on the host (each a
CUDA synchronisation) happen at logging points only, so their number does not grow with the
number of steps. Checked on the CPU by counting such calls made from sslbench's own code."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sslbench.data import load_dataset
from sslbench.methods import build_method
from sslbench.resolve import resolve_config
from sslbench.train.loop import pretrain

SYNCING = ("item", "tolist", "__bool__", "__float__", "__int__", "nonzero", "cpu")


def host_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Patch the syncing tensor methods to log the sslbench function that calls them."""
    calls: list[str] = []
    for name in SYNCING:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, __original=original, **kwargs):  # type: ignore[no-untyped-def]
            caller = sys._getframe(1)
            if str(caller.f_globals.get("__name__", "")).startswith("sslbench"):
                calls.append(f"{caller.f_globals['__name__']}:{caller.f_code.co_name}")
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


@pytest.mark.parametrize("method", ["simclr", "byol", "moco"])
def test_host_reads_do_not_grow_with_the_number_of_steps(
        method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = resolve_config(method, overrides=[
        "data.dataset=synthetic", "train.batch_size=8", "model.width=4", "train.epochs=1",
        "train.log_every=1000", "augment.blur_prob=0.5", "augment.solarize_prob=0.2"])
    full = load_dataset("synthetic")
    counts = []
    for steps in (1, 3):
        data = replace(full, train_images=full.train_images[:8 * steps])
        method_module = build_method(cfg, 1)
        calls = host_reads(monkeypatch)
        pretrain(cfg, data, method_module, torch.device("cpu"), tmp_path, show_progress=False)
        monkeypatch.undo()
        counts.append(sorted(calls))
    assert counts[0], "the patch sees the loop's logging reads"
    assert counts[0] == counts[1], f"host reads grow with the steps: {counts}"
