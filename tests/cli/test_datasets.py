from __future__ import annotations

from pathlib import Path

import pytest

from sslbench.cli import main
from sslbench.data import discovery


def test_datasets_lists_where_each_is_found(
    fmnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.delenv("SSLBENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(discovery, "DEBIAN_ROOT", tmp_path / "debian")
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["datasets", "--data-dir", str(fmnist_dir)]) == 0
    out = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 2}
    assert str(fmnist_dir / "fashion-mnist") in rows["fashion-mnist"]
    assert "1×28×28" in rows["fashion-mnist"]
    assert "not found (looked in:" in rows["mnist"]
    assert "synthetic (generated)" in rows["synthetic"]
