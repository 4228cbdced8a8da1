"""`sslbench db merge`: copy runs recorded in another results database into this one.

A reproduction kept in its own SQLite file, or runs made on another machine, join the main
database with their metric and artifact rows. The source is read from one snapshot and never
written; the target gets every run in one transaction (all or nothing). A run keeps every column
but its id (the target gives it a new one) and its parent id (remapped to the parent's new id).
Runs are known by their uid, unique across databases: a run whose uid the target already holds is
skipped, so merging the same source twice copies nothing the second time. Files are not copied:
the rows keep the paths they recorded.

Example::

    result = merge_runs("repro.sqlite", "sslbench.sqlite", run_ids=[7])  # run 7, its children
    print(result.copied_runs, result.metric_rows, result.skipped_runs)
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Table, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from sslbench.errors import RunFailure, StoreUnavailable, UserError
from sslbench.store.db import (
    _first_line,
    check_writable,
    display_name,
    head_revision,
    open_engine,
    read_snapshot,
    resolve_db_url,
    sqlite_path,
    stored_revision,
)
from sslbench.store.models import Base

UNFINISHED = ("RUNNING", "QUEUED")  # runs whose rows are still changing: never copied
_RUNS = Base.metadata.tables["runs"]
_CHILD_TABLES = (Base.metadata.tables["metrics"], Base.metadata.tables["artifacts"])
_BATCH = 5000  # metric rows read and inserted at a time


@dataclass(frozen=True)
class MergeResult:
    """What a merge did, with the databases as messages name them."""

    source: str
    target: str
    copied: dict[int, int] = field(default_factory=dict)  # source run id → its new id in target
    skipped: list[int] = field(default_factory=list)  # source run ids whose uid target holds
    unparented: list[int] = field(default_factory=list)  # copied without their parent
    metric_rows: int = 0
    artifacts: int = 0

    @property
    def copied_runs(self) -> int:
        """How many runs were copied."""
        return len(self.copied)

    @property
    def skipped_runs(self) -> int:
        """How many runs were already in the target (left as they were)."""
        return len(self.skipped)


def merge_runs(source: str, target: str, run_ids: list[int] | None = None) -> MergeResult:
    """Copy runs of `source` into `target` (each a `--db` value: a SQLite path or a URL); the
    target is created if missing. `run_ids`: those runs and all their descendants; None: every
    run.

    A copied run whose parent is not copied links to the target's run of the parent's uid, else
    gets no parent (listed in `unparented`). Raises `UserError`, having written nothing, when
    the source is missing, not an sslbench database or at another schema revision, when both
    are the same database, when a run id is not in the source, and when a chosen run (to copy,
    or to skip as already there) is still RUNNING or QUEUED in the source.
    """
    source_url = resolve_db_url(source, option="SOURCE")
    target_url = resolve_db_url(target)
    name = display_name(source_url)
    path = sqlite_path(source_url)
    if path is not None and not path.exists():
        raise UserError(f"SOURCE {name!r} does not exist")
    if _same_database(source_url, target_url):
        raise UserError(f"SOURCE and --db are the same database ({name}); nothing to merge")
    revision, _ = stored_revision(source_url, hint="nothing was merged")
    if revision is None:
        raise UserError(f"SOURCE {name!r} is not an sslbench database (it holds no runs "
                        "table); nothing was merged")
    if revision != head_revision():
        raise UserError(f"SOURCE {name!r} is at an older schema revision ({revision}, now "
                        f"{head_revision()}): run `sslbench db upgrade --db "
                        f"{shlex.quote(source)}` first")
    check_writable(target_url)
    try:
        with read_snapshot(source_url) as src:
            runs = {row["id"]: row for row in src.execute(select(_RUNS)).mappings()}
            chosen = _chosen(runs, run_ids, name)
            engine, _ = open_engine(target_url, create=True)
            try:
                with engine.begin() as dst:
                    return _copy(src, dst, runs, chosen, name, display_name(target_url))
            finally:
                engine.dispose()
    except IntegrityError as exc:  # another process changed the target meanwhile
        raise RunFailure(f"DB {display_name(target_url)!r} changed while merging "
                         f"({_first_line(exc.orig)}); nothing was copied: merge again") from None
    except OperationalError as exc:  # locked for longer than the busy timeout, unreachable
        raise StoreUnavailable(f"merging {name!r} into {display_name(target_url)!r}: "
                               f"{_first_line(exc.orig)}; nothing was copied") from None


def _chosen(runs: Mapping[int, Mapping[str, Any]], run_ids: list[int] | None,
            source: str) -> list[int]:
    """The source ids to copy, parents before their children: every run, or `run_ids` and their
    descendants. Refuses an unknown id and an unfinished run."""
    if run_ids is None:
        wanted = set(runs)
    else:
        if missing := sorted(set(run_ids) - set(runs)):
            raise UserError(f"no run with id {missing[0]} in SOURCE {source!r}")
        children: dict[int, list[int]] = {}
        for run in runs.values():
            if run["parent_id"] is not None:
                children.setdefault(run["parent_id"], []).append(run["id"])
        wanted, todo = set(), list(run_ids)
        while todo:
            run_id = todo.pop()
            if run_id not in wanted:
                wanted.add(run_id)
                todo.extend(children.get(run_id, ()))
    if unfinished := sorted(i for i in wanted if runs[i]["status"] in UNFINISHED):
        listed = ", ".join(f"{i} ({runs[i]['status']})" for i in unfinished)
        raise UserError(f"runs of SOURCE {source!r} still going: {listed}; wait for them to "
                        "finish, or leave them out with --run (a run whose process died is "
                        "marked KILLED by any command that opens SOURCE, e.g. `sslbench runs "
                        "list --db SOURCE`)")
    return _parents_first(wanted, runs)


def _parents_first(wanted: set[int], runs: Mapping[int, Mapping[str, Any]]) -> list[int]:
    """`wanted` ordered so that each run comes after its parent when that is wanted too."""
    order: list[int] = []
    placed: set[int] = set()
    for run_id in sorted(wanted):
        chain = []
        while run_id in wanted and run_id not in placed:
            placed.add(run_id)
            chain.append(run_id)
            run_id = runs[run_id]["parent_id"]
        order.extend(reversed(chain))
    return order


def _copy(src: Connection, dst: Connection, runs: Mapping[int, Mapping[str, Any]],
          chosen: Sequence[int], source: str, target: str) -> MergeResult:
    """Insert the `chosen` runs that `dst` lacks, with their metric and artifact rows."""
    in_target = {uid: run_id for uid, run_id in dst.execute(select(_RUNS.c.uid, _RUNS.c.id))}
    new_id: dict[int, int] = {}  # source id → target id, of the runs copied or already there
    copied: dict[int, int] = {}
    skipped: list[int] = []
    unparented: list[int] = []
    rows = dict.fromkeys((table.name for table in _CHILD_TABLES), 0)
    for run_id in chosen:
        run = runs[run_id]
        if run["uid"] in in_target:
            new_id[run_id] = in_target[run["uid"]]
            skipped.append(run_id)
            continue
        parent_id = _target_parent(run["parent_id"], runs, new_id, in_target)
        if run["parent_id"] is not None and parent_id is None:
            unparented.append(run_id)
        inserted = dst.execute(insert(_RUNS).values({**_without_id(run), "parent_id": parent_id}))
        new_id[run_id] = copied[run_id] = inserted.inserted_primary_key[0]
        for table in _CHILD_TABLES:
            rows[table.name] += _copy_rows(src, dst, table, run_id, copied[run_id])
    return MergeResult(source, target, copied, skipped, sorted(unparented),
                       metric_rows=rows["metrics"], artifacts=rows["artifacts"])


def _target_parent(parent_id: int | None, runs: Mapping[int, Mapping[str, Any]],
                   new_id: Mapping[int, int], in_target: Mapping[str, int]) -> int | None:
    """The target id for a source parent: its copy, else the target's run of its uid, else
    None (a parent left out of a `--run` merge that the target does not hold)."""
    if parent_id is None:
        return None
    if parent_id in new_id:
        return new_id[parent_id]
    parent = runs.get(parent_id)
    return None if parent is None else in_target.get(parent["uid"])


def _copy_rows(src: Connection, dst: Connection, table: Table, run_id: int,
               new_run_id: int) -> int:
    """Copy a run's rows of `table` (metrics or artifacts) in their order; how many."""
    query = (select(table).where(table.c.run_id == run_id).order_by(table.c.id)
             .execution_options(yield_per=_BATCH))
    copied = 0
    for batch in src.execute(query).mappings().partitions():
        dst.execute(insert(table), [{**_without_id(row), "run_id": new_run_id} for row in batch])
        copied += len(batch)
    return copied


def _without_id(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key != "id"}


def _same_database(a: str, b: str) -> bool:
    """Whether two URLs name one database: the same SQLite file, or the same server database
    (whatever the driver, user or password). Two spellings missed here still merge nothing, as
    every run's uid is already there."""
    path_a, path_b = sqlite_path(a), sqlite_path(b)
    if path_a is not None or path_b is not None:
        return (path_a is not None and path_b is not None and path_b.exists()
                and os.path.samefile(path_a, path_b))
    return _server_key(a) == _server_key(b)


def _server_key(url: str) -> tuple[Any, ...]:
    sa_url = make_url(url)
    return (sa_url.get_backend_name(), sa_url.host, sa_url.port, sa_url.database,
            sorted(sa_url.query.items()))
