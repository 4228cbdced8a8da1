"""The wheel ships every subpackage and the search spaces (tool.setuptools.packages is a list)."""

import tomllib
from pathlib import Path

import pytest

from sslbench.sweep.space import shipped_spaces_dir


def test_every_subpackage_and_the_spaces_are_listed(repo: Path) -> None:
    config = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join(p.parent.relative_to(repo).parts)
               for p in (repo / "sslbench").rglob("__init__.py")}
    assert set(config["packages"]) == folders | {"sslbench.sweeps"}
    assert config["package-dir"] == {"sslbench.sweeps": "sweeps"}
    assert shipped_spaces_dir() == repo / "sweeps"  # a source checkout reads them in place


@pytest.mark.slow
def test_the_wheel_holds_the_spaces(repo: Path, tmp_path: Path) -> None:
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(repo)], check=True, timeout=600)
    (wheel,) = tmp_path.glob("sslbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    spaces = {f"sslbench/sweeps/{p.name}" for p in (repo / "sweeps").glob("*.yaml")}
    assert spaces and spaces <= names
    assert "sslbench/run/pretrain.py" in names and "sslbench/distributed/launch.py" in names
