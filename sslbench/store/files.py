"""A run's files on disk, found through what its row records (its ``run_dir`` and the paths of its
artifacts, whatever the layout), their size, and their removal together with the rows.

Removing is planned first (:func:`plan_removal`: which rows go, which stay, which files go and how
many bytes that frees) and then applied (:func:`apply_removal`) so that no row is left pointing at
missing files and no file is left without a row:

1. each file or folder is renamed aside (atomic, same folder); if one cannot be, the renamed ones
   are put back and nothing has changed;
2. the rows go in one database transaction (:meth:`Store.remove_runs`), which claims every run in
   a final state; if it fails, the files are put back;
3. the renamed files are deleted.

Never imports torch.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from sslbench.errors import UserError
from sslbench.store.api import Store
from sslbench.store.db import sqlite_path
from sslbench.store.models import FINAL_STATUSES, Artifact, Run

_ASIDE = ".sslbench-removing"


@dataclass(frozen=True)
class RunFiles:
    """What the store records of a run's place on disk, and what removing needs to know."""

    id: int
    kind: str
    method: str
    dataset: str
    status: str
    parent_id: int | None
    sweep_id: str | None
    run_dir: str | None
    artifacts: tuple[str, ...]

    @property
    def paths(self) -> list[Path]:
        """The run's folder and its artifacts outside that folder (each file counted once)."""
        folder = Path(self.run_dir) if self.run_dir else None
        out = [folder] if folder is not None else []
        out += [Path(a) for a in self.artifacts
                if folder is None or not Path(a).is_relative_to(folder)]
        return out


@dataclass(frozen=True)
class Removal:
    """What removing some runs would do: the rows deleted, the rows kept without their files
    (sweep trials, or runs whose checkpoints alone go), the files removed and their bytes, and the
    files left because a run that stays records them too."""

    deleted: tuple[int, ...]
    stripped: tuple[int, ...]
    paths: tuple[Path, ...]
    bytes: int
    shared: tuple[Path, ...] = ()
    runs: dict[int, RunFiles] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.deleted or self.stripped)


def inventory(store: Store, run_ids: Collection[int] | None = None) -> dict[int, RunFiles]:
    """Every run's (or those of ``run_ids``) recorded place on disk, in two queries."""
    runs = select(Run.id, Run.kind, Run.method, Run.dataset, Run.status, Run.parent_id,
                  Run.sweep_id, Run.run_dir)
    artifacts = select(Artifact.run_id, Artifact.path).order_by(Artifact.id)
    if run_ids is not None:
        runs = runs.where(Run.id.in_(run_ids))
        artifacts = artifacts.where(Artifact.run_id.in_(run_ids))
    with store.bulk_session() as session:
        paths: dict[int, list[str]] = {}
        for run_id, path in session.execute(artifacts):
            paths.setdefault(run_id, []).append(path)
        return {row.id: RunFiles(row.id, row.kind, row.method, row.dataset, row.status,
                                 row.parent_id, row.sweep_id, row.run_dir,
                                 tuple(paths.get(row.id, ())))
                for row in session.execute(runs.order_by(Run.id))}


def disk_usage(paths: Iterable[Path]) -> int:
    """Bytes of the files at or under ``paths`` that exist (symbolic links not followed)."""
    total = 0
    for path in paths:
        if path.is_symlink() or path.is_file():
            total += path.lstat().st_size
        elif path.is_dir():
            for folder, _, files in os.walk(path):
                total += sum(os.lstat(os.path.join(folder, name)).st_size for name in files)
    return total


def plan_removal(store: Store, delete: Collection[int] = (),
                 strip: Collection[int] = ()) -> Removal:
    """The removal of runs ``delete`` (rows and files) and of the files of runs ``strip``.

    Children of a deleted run go with it. A sweep trial (and its evaluations) keeps its row, as
    the study's trials refer to it, and loses its files. A file or folder that a run staying in
    the store also records (its folder, an artifact, one inside the other) is left. Unknown runs
    and runs not in a final state are a UserError.
    """
    runs = inventory(store)
    for run_id in (*delete, *strip):
        if run_id not in runs:
            raise UserError(f"no run with id {run_id} in DB")
    children: dict[int, list[int]] = {}
    for run in runs.values():
        if run.parent_id is not None:
            children.setdefault(run.parent_id, []).append(run.id)
    deleted: set[int] = set()
    stripped = set(strip)
    for run_id in delete:
        _descend(run_id, children, runs, deleted, stripped, kept=False)
    stripped -= deleted
    leaving = deleted | stripped
    for run_id in sorted(leaving):
        if runs[run_id].status not in FINAL_STATUSES:
            raise UserError(f"run {run_id} is {runs[run_id].status}: stop it (or wait until it "
                            "ends) before removing it")
    candidates = {p for run_id in sorted(leaving) for p in runs[run_id].paths}
    staying = [p for run in runs.values() if run.id not in leaving for p in run.paths]
    shared = {p for p in candidates
              if any(p == s or p.is_relative_to(s) or s.is_relative_to(p) for s in staying)}
    paths = sorted(p for p in candidates - shared if p.exists() or p.is_symlink())
    for path in paths:
        _check_removable(path, store)
    return Removal(tuple(sorted(deleted)), tuple(sorted(stripped)), tuple(paths),
                   disk_usage(paths), tuple(sorted(shared)),
                   {i: runs[i] for i in sorted(leaving)})


def _check_removable(path: Path, store: Store) -> None:
    """A recorded path that is no run's own (a root, the home or current folder, a folder holding
    the database) is refused: a corrupt or hand-edited row must not remove those."""
    resolved = path.resolve()
    database = sqlite_path(store.url)
    if (resolved == Path(resolved.anchor) or resolved in (Path.home().resolve(), Path.cwd())
            or (database is not None and database.resolve().is_relative_to(resolved))):
        raise UserError(f"refusing to remove {str(path)!r}: a run records it, but it is not a "
                        "run's own folder (fix that run's row)")


def _descend(run_id: int, children: dict[int, list[int]], runs: dict[int, RunFiles],
             deleted: set[int], stripped: set[int], *, kept: bool) -> None:
    """``run_id`` and its descendants into ``deleted``, or ``stripped`` from a sweep trial down."""
    kept = kept or runs[run_id].sweep_id is not None
    (stripped if kept else deleted).add(run_id)
    for child in children.get(run_id, ()):
        _descend(child, children, runs, deleted, stripped, kept=kept)


def apply_removal(store: Store, removal: Removal) -> list[Path]:
    """Remove the files and rows of ``removal`` (see the module doc); the renamed-aside files
    that could not be deleted at the end (rows are gone; nothing refers to them)."""
    aside: list[tuple[Path, Path]] = []
    try:
        for path in removal.paths:
            moved = path.with_name(f".{path.name}{_ASIDE}-{os.getpid()}")
            try:
                path.rename(moved)
            except FileNotFoundError:
                continue  # gone since the plan: nothing to remove
            except OSError as exc:
                raise UserError(f"cannot remove {str(path)!r} ({exc.strerror}); nothing was "
                                "removed") from None
            aside.append((path, moved))
        store.remove_runs(removal.deleted, removal.stripped)
    except BaseException:
        for path, moved in reversed(aside):
            moved.rename(path)
        raise
    leftovers = []
    for _, moved in aside:
        try:
            if moved.is_dir() and not moved.is_symlink():
                shutil.rmtree(moved)
            else:
                moved.unlink()
        except OSError:
            leftovers.append(moved)
    return leftovers
