"""The run database from Python (a notebook, a script): runs, configs, metrics and leaderboards as
plain records, or as pandas DataFrames when pandas is installed (``pip install
'sslbench[pandas]'``). `sslbench runs list` and `sslbench report` call the same functions.

    from sslbench import results
    store = results.open_store("sslbench.sqlite")
    runs = results.find_runs(store, kind="pretrain", method="byol", status="COMPLETED")
    runs[0].config["optimizer"]["lr"], runs[0].summary["loss"]
    results.runs_frame(store, kind="pretrain")          # a row per run: fields, config.*, summary.*
    results.metrics_frame(store, [r.id for r in runs])  # a row per logged value
    results.leaderboard_frame(store, dataset="fashion-mnist")

No torch here: reading results is fast and works where torch is not installed.
See docs/python-api.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sslbench.config import flatten
from sslbench.errors import UserError
from sslbench.report.export import records
from sslbench.report.table import Filters, Leaderboard, build_leaderboard, config_value, load_runs
from sslbench.store import RunRecord, Store
from sslbench.store.files import disk_usage, inventory

if TYPE_CHECKING:
    import pandas as pd

# RunRecord fields that are columns of `runs_frame` (config, summary and versions are flattened
# into their own columns; metrics and artifacts have frames of their own)
_NESTED = ("config", "summary", "versions", "metrics", "artifacts")


def open_store(db: str | None = None, *, write: bool = False) -> Store:
    """The database ``db`` (a SQLite path or a SQLAlchemy URL; default ``$SSLBENCH_DB`` or
    ./sslbench.sqlite); a missing SQLite file is an error, never created. Close it when done
    (``store.close()``, or ``with results.open_store(...) as store:``).

    For reading (the default), a database that cannot be written (a read-only file or folder)
    is read from a snapshot; ``write=True`` (deleting runs) makes it an error instead."""
    return Store.open(db, create=False, read=not write)


def find_runs(store: Store, *, kind: str | None = None, method: str | None = None,
              dataset: str | None = None, status: str | None = None, sweep: str | None = None,
              parent: int | None = None, where: dict[str, Any] | None = None,
              limit: int | None = None) -> list[RunRecord]:
    """Runs matching every given filter, newest first, without their metric rows
    (``store.get_run(id)`` has them).

    ``where`` maps dotted config keys to the values wanted, e.g. ``{"method.ema_decay": 0.99}``.
    """
    wanted = where or {}
    found = store.list_runs(kind=kind, method=method, dataset=dataset, status=status,
                            sweep_id=sweep, parent_id=parent, limit=None if wanted else limit)
    if wanted:
        found = [r for r in found
                 if all(config_value(r.config, k) == v for k, v in wanted.items())]
    return found[:limit] if limit is not None else found


def leaderboard(store: Store, *, dataset: str | None = None,
                method: Sequence[str] | None = None, backbone: str | None = None,
                status: str | None = "COMPLETED", budget: str | None = None,
                since: datetime | None = None, until: datetime | None = None,
                group_by: Sequence[str] = (), protocols: Sequence[str] | None = None,
                sort: str | None = None) -> Leaderboard:
    """The leaderboard of `sslbench report`: pretrain runs grouped by dataset, method and the
    ``group_by`` config keys and the compute budget (``budget``: only this one, a label such as
    ``"10m"``), with the mean and 95 % interval over seeds per evaluation protocol."""
    filters = Filters(dataset=dataset, method=tuple(method) if method else None,
                      backbone=backbone, status=status, budget=budget, since=since, until=until)
    return build_leaderboard(load_runs(store, filters), group_by=group_by, protocols=protocols,
                             sort=sort)


def disk_usage_of(store: Store, run_ids: Iterable[int]) -> dict[int, int]:
    """Bytes on disk of each run's files (its folder and its artifacts, as its row records
    them; 0 when they are gone)."""
    runs = inventory(store, list(run_ids))
    return {run_id: disk_usage(run.paths) for run_id, run in runs.items()}


# -- as DataFrames -------------------------------------------------------------------------------


def runs_frame(store: Store, **filters: Any) -> pd.DataFrame:
    """:func:`find_runs` (same filters) as a DataFrame indexed by run id: the run's fields, its
    config flattened into ``config.<dotted key>`` columns, its summary into ``summary.<key>``
    columns (NaN where a run lacks the key) and ``disk_bytes``, what its files use."""
    runs = find_runs(store, **filters)
    frame = run_records_frame(runs)
    frame["disk_bytes"] = frame.index.map(disk_usage_of(store, frame.index))
    return frame


def run_records_frame(runs: Iterable[RunRecord]) -> pd.DataFrame:
    """Run records (from :func:`find_runs`, ``store.get_run``...) as :func:`runs_frame` lays
    them out."""
    pd = _pandas()
    plain = [f.name for f in fields(RunRecord) if f.name not in _NESTED]
    rows = []
    for run in runs:
        row = {name: getattr(run, name) for name in plain} | {"duration_s": run.duration_s}
        row |= {f"config.{k}": v for k, v in flatten(run.config).items()}
        row |= {f"summary.{k}": v for k, v in run.summary.items()}
        rows.append(row)
    columns = [*plain, "duration_s"]
    return pd.DataFrame(rows, columns=_ordered(columns, rows)).set_index("id")


def metrics_frame(store: Store, run_ids: Iterable[int],
                  keys: Sequence[str] | None = None) -> pd.DataFrame:
    """Every logged value of the runs (only ``keys`` if given): columns run_id, key, step,
    epoch, value, time; in logging order per run. Pivot it for curves::

        frame.pivot_table(index="epoch", columns="run_id", values="value")
    """
    pd = _pandas()
    rows = [{"run_id": run_id, "key": m.key, "step": m.step, "epoch": m.epoch,
             "value": m.value, "time": m.time}
            for run_id in run_ids for m in store.get_run(run_id).metrics
            if keys is None or m.key in keys]
    frame = pd.DataFrame(rows, columns=["run_id", "key", "step", "epoch", "value", "time"])
    return frame.astype({"step": "Int64", "epoch": "Int64"})


def leaderboard_frame(store: Store, **options: Any) -> pd.DataFrame:
    """:func:`leaderboard` (same options) as a DataFrame: a row per group with, per protocol,
    ``<protocol>_best``, ``_mean``, ``_std`` and ``_n`` (test top-1 as fractions), as
    `sslbench report --format csv` writes it."""
    return _pandas().DataFrame(records(leaderboard(store, **options)))


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise UserError("DataFrames need pandas: pip install 'sslbench[pandas]' (the records "
                        "functions work without it)") from None
    return pandas


def _ordered(first: list[str], rows: list[dict[str, Any]]) -> list[str]:
    """The fixed columns, then the config and summary columns, each group sorted."""
    extra = sorted({k for row in rows for k in row} - set(first))
    return first + [k for k in extra if k.startswith("config.")] + \
        [k for k in extra if k.startswith("summary.")]
