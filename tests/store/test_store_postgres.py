"""The same store on a real PostgreSQL server, started by the test on a Unix socket.

Skipped when no PostgreSQL server binaries (Debian's `postgresql`) or no driver (`psycopg` or
`psycopg2`) are installed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from sslbench.errors import UserError
from sslbench.store import Store
from sslbench.store.db import make_engine
from sslbench.store.models import VERSION_TABLE, Base

pytestmark = pytest.mark.multiprocess  # starts a PostgreSQL server


def test_store_on_postgresql(pg_server: str, tmp_path: Path) -> None:
    checkpoint = tmp_path / "last.pt"
    checkpoint.write_bytes(b"w" * 1000)
    with Store.open(pg_server) as store:
        parent = store.create_run(
            kind="pretrain",
            method="vicreg",
            dataset="cifar10",
            config={"lr": 0.3},
            seed=1,
            provenance={"host": "h"},
        )
        child = store.create_run(
            kind="linear",
            method="vicreg",
            dataset="cifar10",
            config={},
            seed=1,
            parent_id=parent,
            provenance={"host": "h"},
        )
        store.log_metrics(parent, {"loss": 2.5, "knn_top1": math.nan}, step=5, epoch=0)
        store.add_artifact(parent, "checkpoint", checkpoint)
        store.update_summary(child, linear_top1=0.9)
        store.finish_run(parent, "COMPLETED")
        store.finish_run(child, "FAILED", failure_reason="out of memory")
    with Store.open(pg_server, create=False) as store:  # reopening migrates nothing, keeps runs
        run = store.get_run(parent)
        assert run.status == "COMPLETED" and run.config == {"lr": 0.3}
        assert run.started_at is not None and run.started_at.tzinfo is not None
        assert [m.key for m in run.metrics] == ["loss", "knn_top1"]
        assert math.isnan(run.metrics[1].value)
        assert run.artifacts[0].size_bytes == 1000
        assert [c.id for c in store.children(parent)] == [child]
        assert store.list_runs(status="FAILED")[0].failure_reason == "out of memory"
        engine = make_engine(store.url)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE}), Base.metadata) == []
    finally:
        engine.dispose()


def test_foreign_postgresql_database_is_refused(pg_database: Callable[[str], str]) -> None:
    other = pg_database("other")
    engine = make_engine(other)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE runs (id serial PRIMARY KEY)"))
    finally:
        engine.dispose()
    with pytest.raises(UserError, match="is not an sslbench database"):
        Store.open(other)


def test_a_database_holding_an_optuna_study_takes_the_store_too(
        pg_database: Callable[[str], str]) -> None:
    """One URL for `--storage` and `--db`: Optuna's tables (and its `alembic_version`) first."""
    import optuna

    url = pg_database("shared")
    storage = optuna.storages.RDBStorage(url.replace("postgresql://", "postgresql+psycopg://"))
    optuna.create_study(study_name="s", storage=storage).optimize(lambda t: t.suggest_float(
        "x", 0, 1), n_trials=2)
    with Store.open(url) as store:
        store.create_run(kind="trial", method="byol", dataset="mnist", config={}, seed=0,
                         provenance={"host": "h"})
    with Store.open(url, create=False) as store:
        assert len(store.list_runs()) == 1
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == 2  # untouched


def test_removing_runs_on_postgresql(pg_server: str, tmp_path: Path) -> None:
    """`runs delete`'s transaction: rows, children and artifacts go, a stripped run keeps its
    row, and a running run is refused with nothing changed."""
    from sslbench.store.files import apply_removal, plan_removal

    common = {"method": "byol", "dataset": "cifar10", "config": {}, "seed": 0,
              "provenance": {"host": "h"}}
    with Store.open(pg_server) as store:
        known = {r.id for r in store.list_runs()}
        folders = []
        for kind in ("pretrain", "trial"):
            run = store.create_run(kind=kind, sweep_id="s" if kind == "trial" else None,
                                   **common)
            folder = tmp_path / str(run)
            folder.mkdir()
            (folder / "checkpoint.pt").write_bytes(b"w" * 10)
            store.set_run_dir(run, folder)
            store.add_artifact(run, "checkpoint", folder / "checkpoint.pt")
            store.finish_run(run, "COMPLETED")
            folders.append((run, folder))
        (parent, parent_dir), (trial, trial_dir) = folders
        child = store.create_run(kind="knn", parent_id=parent, **common)
        store.finish_run(child, "COMPLETED")
        running = store.create_run(kind="pretrain", **common)
        with pytest.raises(UserError, match="RUNNING"):
            store.remove_runs([parent, running])
        assert store.get_run(parent).artifacts
        apply_removal(store, plan_removal(store, delete=[parent, trial]))
        assert {r.id for r in store.list_runs()} - known == {trial, running}
        assert store.get_run(trial).artifacts == [] and store.get_run(trial).run_dir is None
    assert not parent_dir.exists() and not trial_dir.exists()
