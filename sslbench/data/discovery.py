"""Find a dataset's files on disk, offline first; download only as the last resort.

Search order for dataset `name` (first folder holding all its files wins):

1. `data_dir` (the `--data-dir` flag or config `data.data_dir`), else env `SSLBENCH_DATA`: a root
   holding one folder per dataset (`ROOT/fashion-mnist/*.gz`), or the dataset folder itself;
2. the user cache, `$XDG_CACHE_HOME/sslbench/datasets/<name>` (default `~/.cache/...`);
3. `/usr/share/datasets/<name>`, where Debian's `dataset-fashion-mnist` package installs;
4. a torchvision download into the user cache, when allowed.

Each file may be gzip-compressed (`x.gz`) or not (`x`); an entry ending in `/` is a folder
(image-folder datasets). Torch-free: torchvision is imported only to download.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sslbench.data.registry import DatasetInfo, get_info
from sslbench.errors import UserError

ENV_VAR = "SSLBENCH_DATA"
DEBIAN_ROOT = Path("/usr/share/datasets")
# torchvision class, where its raw files land under the download root, and its arguments
_DOWNLOADS: dict[str, tuple[str, str, dict[str, object]]] = {
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw", {"train": True}),
    "mnist": ("MNIST", "MNIST/raw", {"train": True}),
    "cifar10": ("CIFAR10", "", {"train": True}),
    "cifar100": ("CIFAR100", "", {"train": True}),
    "stl10": ("STL10", "", {"split": "train"}),  # the archive holds every split
}
_APT_PACKAGES = {"fashion-mnist": "dataset-fashion-mnist"}


@dataclass(frozen=True)
class Located:
    """Where a dataset was found (`folder`, None if nowhere) and the folders looked at, in order."""

    name: str
    folder: Path | None
    searched: tuple[Path, ...]


def cache_root() -> Path:
    """The user cache root for datasets: `$XDG_CACHE_HOME/sslbench/datasets`."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "sslbench" / "datasets"


def candidate_folders(name: str, data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders that may hold dataset `name`, in search order."""
    candidates: list[Path] = []
    root = data_dir if data_dir is not None else os.environ.get(ENV_VAR) or None
    if root is not None:
        root = Path(root).expanduser()
        candidates += [root / name, root]
    candidates += [cache_root() / name, DEBIAN_ROOT / name]
    return candidates


def dataset_files(folder: Path, info: DatasetInfo) -> dict[str, Path] | None:
    """Each expected file name mapped to its path in `folder` (`.gz` or not); None if one lacks."""
    found: dict[str, Path] = {}
    for expected in info.files:
        if expected.endswith("/"):
            if not (folder / expected).is_dir():
                return None
            found[expected] = folder / expected
            continue
        plain = expected.removesuffix(".gz")
        for candidate in (folder / f"{plain}.gz", folder / plain):
            if candidate.is_file():
                found[expected] = candidate
                break
        else:
            return None
    return found


def locate(name: str, data_dir: str | os.PathLike[str] | None = None) -> Located:
    """Look for dataset `name` in the search order, without downloading."""
    info = get_info(name)
    searched: list[Path] = []
    for folder in candidate_folders(name, data_dir):
        searched.append(folder)
        if info.files and dataset_files(folder, info) is not None:
            return Located(name, folder, tuple(searched))
    return Located(name, None, tuple(searched))


def require(
    name: str, data_dir: str | os.PathLike[str] | None = None, *, download: bool = True
) -> Path:
    """The folder holding dataset `name`: found on disk, else downloaded (if allowed).

    Raises a one-line UserError naming where it looked and how to get the data.
    """
    info = get_info(name)
    located = locate(name, data_dir)
    if located.folder is not None:
        return located.folder
    if download and info.downloadable:
        try:
            return download_to_cache(name)
        except Exception as exc:  # no network, bad checksum, full disk: all the same to the user
            reason = " ".join(str(exc).split())[:200]
            raise UserError(not_found_message(located, download_error=reason)) from None
    raise UserError(not_found_message(located))


def not_found_message(located: Located, *, download_error: str | None = None) -> str:
    """One line: where dataset `located.name` was looked for, and how to provide it."""
    name = located.name
    looked = ", ".join(str(p) for p in located.searched)
    hints = [f"pass --data-dir DIR holding {name}/{get_info(name).layout}", f"set {ENV_VAR}"]
    if name in _APT_PACKAGES:
        hints.append(f"`apt-get install {_APT_PACKAGES[name]}`")
    if get_info(name).downloadable and download_error is None:
        hints.append("let sslbench download it (needs network)")
    how = ", ".join(hints[:-1]) + f", or {hints[-1]}"
    failed = f" (download failed: {download_error})" if download_error is not None else ""
    return f"dataset {name!r} not found{failed} (looked in: {looked}); {how}"


def download_to_cache(name: str) -> Path:
    """Download dataset `name` with torchvision and keep its raw files in `cache_root()/name`."""
    info = get_info(name)
    target = cache_root() / name
    staging = target / "_torchvision"
    _, raw_folder, arguments = _DOWNLOADS[name]
    try:
        _torchvision_class(name)(root=str(staging), download=True, **arguments)
        raw = staging / raw_folder
        files = dataset_files(raw, info)
        if files is None:
            raise RuntimeError(f"torchvision left no raw files in {raw}")
        for path in files.values():
            destination = target / path.relative_to(raw)
            destination.parent.mkdir(parents=True, exist_ok=True)
            path.replace(destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _torchvision_class(name: str) -> type:
    import torchvision.datasets

    return getattr(torchvision.datasets, _DOWNLOADS[name][0])
