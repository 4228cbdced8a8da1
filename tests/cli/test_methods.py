"""`sslbench methods`: every registered method with its paper, family and hyperparameters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sslbench.cli import main
from sslbench.methods import method_names

FAMILIES = {"contrastive", "distillation", "redundancy reduction", "clustering",
            "mutual information"}


def test_json_lists_every_method(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == method_names()
    assert {"moco", "mocov3", "simsiam", "directpred", "align_uniform"} <= set(method_names())
    for row in rows:
        assert row["family"] in FAMILIES and row["paper"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["moco"]["hyperparameters"]["queue_size"] == 4096
    assert by_name["directpred"]["hyperparameters"] == {
        "rho": 0.3, "eps": 0.01, "update_every": 1, "ema_decay": 0.99, "ema_final": 1.0}
    assert by_name["simsiam"]["hyperparameters"]["stop_gradient"] is True


def test_table(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in method_names():
        assert name in out
    assert "method.queue_size=4096" in out and "Chen & He" in out


@pytest.mark.multiprocess
def test_methods_help_does_not_import_torch(repo: Path) -> None:
    code = ("import sys; from sslbench.cli import main; main(['methods', '--help']); "
            "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True,
                         env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"}, check=True)
    assert out.stdout.strip().endswith("[]")
