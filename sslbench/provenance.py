"""Where a run came from: git commit and dirty flag, host, package versions.

Nothing here imports torch: versions are read from the installed packages' metadata.
"""

from __future__ import annotations

import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from sslbench.version import __version__

VERSIONED_PACKAGES = ("sslbench", "torch", "torchvision", "numpy", "sqlalchemy")
GIT_TIMEOUT_S = 5.0


def collect_provenance() -> dict[str, Any]:
    """The provenance recorded with every run.

    Keys: `git_commit` (HEAD sha or None), `git_dirty` (tracked files modified, or None),
    `host`, `versions` (python and the packages in `VERSIONED_PACKAGES`, None if not installed).
    The git checkout is the one holding the sslbench package (an editable install), else the
    current directory's (the experiment's repository).
    """
    git_commit, git_dirty = None, None
    for where in (Path(__file__).resolve().parent, Path.cwd()):
        git_commit, git_dirty = git_state(where)
        if git_commit is not None:
            break
    return {
        "git_commit": git_commit,
        "git_dirty": git_dirty,
        "host": socket.gethostname(),
        "versions": package_versions(),
    }


def git_state(where: Path) -> tuple[str | None, bool | None]:
    """HEAD's sha of the git checkout holding `where` and whether tracked files are modified;
    (None, None) when `where` is in no checkout (or git is missing)."""
    commit = _git(where, "rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = _git(where, "status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status)


def package_versions() -> dict[str, str | None]:
    """Python's version and the installed version of each package in `VERSIONED_PACKAGES`."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    if versions["sslbench"] is None:  # running from a source tree that was never installed
        versions["sslbench"] = __version__
    return versions


def _git(cwd: Path, *args: str) -> str | None:
    """The stripped output of `git ARGS` run in `cwd`, or None if git is missing or fails."""
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None
