"""The wheel ships every subpackage and the search spaces (tool.setuptools.packages is a list)."""

import tomllib
from pathlib import Path

import pytest

from sslbench.config.recipes import shipped_recipes_dir
from sslbench.sweep.space import shipped_spaces_dir


def test_every_subpackage_and_the_spaces_are_listed(repo: Path) -> None:
    config = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join(p.parent.relative_to(repo).parts)
               for p in (repo / "sslbench").rglob("__init__.py")}
    assert set(config["packages"]) == folders | {"sslbench.sweeps", "sslbench.recipes"}
    assert config["package-dir"] == {"sslbench.sweeps": "sweeps", "sslbench.recipes": "recipes"}
    assert shipped_spaces_dir() == repo / "sweeps"  # a source checkout reads them in place
    assert shipped_recipes_dir() == repo / "recipes"


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
    recipes = {f"sslbench/recipes/{p.parent.name}/{p.name}"
               for p in (repo / "recipes").glob("*/*.*")}
    assert recipes and recipes <= names
    assert "sslbench/run/pretrain.py" in names and "sslbench/distributed/launch.py" in names
