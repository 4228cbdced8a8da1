"""Provenance: git state, host and versions, all without importing torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sslbench.provenance import collect_provenance, git_state


@pytest.mark.multiprocess
def test_store_and_provenance_never_import_torch(repo: Path) -> None:
    code = (
        "import sys, sslbench.store, sslbench.provenance, sslbench.cli.runs\n"
        "sslbench.provenance.collect_provenance()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=repo,
        timeout=60,
        env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"},
    )


def test_collect_provenance_shape() -> None:
    provenance = collect_provenance()
    assert set(provenance) == {"git_commit", "git_dirty", "host", "versions"}
    assert provenance["host"]
    assert set(provenance["versions"]) == {
        "python",
        "sslbench",
        "torch",
        "torchvision",
        "numpy",
        "sqlalchemy",
    }
    assert provenance["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert provenance["versions"]["sslbench"]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=30,
    )


def test_git_state(tmp_path: Path) -> None:
    assert git_state(tmp_path) == (None, None)  # not a checkout
    _git(tmp_path, "init", "-q")
    (tmp_path / "train.yaml").write_text("epochs: 1\n")
    _git(tmp_path, "add", "train.yaml")
    _git(tmp_path, "commit", "-q", "-m", "first")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert git_state(tmp_path) == (head, False)
    (tmp_path / "untracked.txt").write_text("ignored for dirtiness\n")
    assert git_state(tmp_path) == (head, False)
    (tmp_path / "train.yaml").write_text("epochs: 2\n")
    assert git_state(tmp_path) == (head, True)


def test_git_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on PATH
    assert git_state(tmp_path) == (None, None)
