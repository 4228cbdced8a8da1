"""The Alembic revisions build exactly the schema the models describe, and upgrades keep data."""

from __future__ import annotations

import math
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect

from sslbench.store import Store
from sslbench.store.db import alembic_config, make_engine
from sslbench.store.models import VERSION_TABLE, Base


def _schema(engine: Engine) -> dict[str, Any]:
    """Tables with their columns, keys and indexes, as the database reports them."""
    inspector = inspect(engine)
    schema: dict[str, Any] = {}
    for table in sorted(set(inspector.get_table_names()) - {VERSION_TABLE}):
        schema[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
            ],
            "pk": inspector.get_pk_constraint(table)["constrained_columns"],
            "fks": sorted(
                (fk["constrained_columns"], fk["referred_table"], fk["options"].get("ondelete"))
                for fk in inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (ix["name"], ix["column_names"], bool(ix["unique"]))
                for ix in inspector.get_indexes(table)
            ),
        }
    return schema


def test_migrated_schema_matches_the_models(store: Store, tmp_path: Path) -> None:
    migrated = make_engine(store.url)
    from_models = create_engine(f"sqlite:///{tmp_path / 'scratch.sqlite'}")
    Base.metadata.create_all(from_models)  # a scratch file, only to compare with
    try:
        assert _schema(migrated) == _schema(from_models)
        assert set(_schema(migrated)) == {"runs", "metrics", "artifacts"}
        with migrated.connect() as conn:
            assert compare_metadata(MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE}), Base.metadata) == []
    finally:
        migrated.dispose()
        from_models.dispose()


def test_a_database_at_an_older_revision_is_upgraded(db_path: Path) -> None:
    with Store.open(str(db_path)) as store:
        url = store.url
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        assert set(inspect(engine).get_table_names()) == {VERSION_TABLE}
    finally:
        engine.dispose()
    with Store.open(str(db_path), create=False) as store:
        run_id = store.create_run(
            kind="pretrain",
            method="byol",
            dataset="mnist",
            config={},
            seed=0,
            provenance={"host": "h"},
        )
        assert store.get_run(run_id).method == "byol"


def test_a_store_made_before_the_version_table_rename_is_moved_over(db_path: Path) -> None:
    """Early stores kept their revision in `alembic_version`, the table Optuna also uses."""
    import sqlite3

    with Store.open(str(db_path)) as store:
        run_id = store.create_run(kind="pretrain", method="simclr", dataset="mnist", config={},
                                  seed=0, provenance={"host": "h"})
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"ALTER TABLE {VERSION_TABLE} RENAME TO alembic_version")
    conn.close()
    with Store.open(str(db_path), create=False) as store:
        assert store.get_run(run_id).method == "simclr"
    engine = make_engine(f"sqlite:///{db_path}")
    try:
        tables = set(inspect(engine).get_table_names())
        assert VERSION_TABLE in tables and "alembic_version" not in tables
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            assert context.get_current_revision() == ScriptDirectory.from_config(
                alembic_config()).get_current_head()
    finally:
        engine.dispose()


FIXTURE_0001 = Path(__file__).parent / "fixtures" / "sslbench_0001.sqlite"


def test_a_store_of_the_first_schema_opens_with_all_its_runs(tmp_path: Path) -> None:
    """`fixtures/sslbench_0001.sqlite` was made by revision sslbench_0001 (see its script)."""
    db = tmp_path / "old.sqlite"
    shutil.copyfile(FIXTURE_0001, db)
    with Store.open(str(db), create=False) as store:
        runs = {r.id: r for r in store.list_runs()}
        assert sorted(runs) == [1, 2, 3, 4]
        first = store.get_run(1)
        assert (first.kind, first.status, first.method, first.summary) == (
            "pretrain", "COMPLETED", "simclr", {"loss": 4.1})
        assert [(m.epoch, m.value) for m in first.metrics] == [(1, 5.2), (2, 4.1)]
        assert first.artifacts[0].size_bytes == 1234567
        assert (first.run_dir, first.pid, first.resumes) == (None, None, 0)  # new columns
        uids = {r.uid for r in runs.values()}  # sslbench_0003: each old run got its own uid
        assert len(uids) == 4 and all(len(u) == 32 and int(u, 16) >= 0 for u in uids)
        assert runs[2].parent_id == 1 and runs[2].summary["linear_top1"] == 0.863
        failed = store.get_run(3)
        assert failed.failure_reason == "non-finite loss at step 17"
        assert math.isnan(failed.metrics[0].value)
        # left RUNNING by a process long gone: marked KILLED, with its last heartbeat
        assert runs[4].status == "KILLED"
        assert "last heartbeat 2025-03-01 12:03:00 UTC" in (runs[4].failure_reason or "")
        new = store.create_run(kind="linear", parent_id=1, method="simclr",
                               dataset="fashion-mnist", config={}, seed=0, provenance={"host": "h"})
        assert new == 5


def test_db_upgrade_command_reports_the_revisions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sslbench.cli import main

    db = tmp_path / "old.sqlite"
    shutil.copyfile(FIXTURE_0001, db)
    assert main(["db", "upgrade", "--db", str(db)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{db}: upgraded from schema revision sslbench_0001 to {_head()}")
    assert main(["db", "upgrade", "--db", str(db)]) == 0
    assert capsys.readouterr().out.strip() == f"{db}: already at schema revision {_head()}"
    with sqlite3.connect(db) as con:
        assert con.execute(f"select version_num from {VERSION_TABLE}").fetchall() == [(_head(),)]
    con.close()


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def test_revision_0003_gives_each_run_a_uid_and_holds_none(db_path: Path) -> None:
    """Down to sslbench_0002 and up again: the runs and their metrics stay, each gets a new,
    distinct uid, and no run is held by a process."""
    with Store.open(str(db_path)) as store:
        ids = [store.create_run(kind="pretrain", method="byol", dataset="mnist", config={},
                                seed=i, provenance={"host": "h"}) for i in range(3)]
        store.log_metrics(ids[0], {"loss": 1.5}, epoch=1)
        before = {i: store.get_run(i).uid for i in ids}
    engine = make_engine(f"sqlite:///{db_path}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            command.downgrade(alembic_config(conn), "sslbench_0002")
        assert "uid" not in {c["name"] for c in inspect(engine).get_columns("runs")}
    finally:
        engine.dispose()
    with Store.open(str(db_path), create=False) as store:
        after = {i: store.get_run(i) for i in ids}
        assert after[ids[0]].metrics[0].value == 1.5
        assert len({r.uid for r in after.values()}) == 3
        assert not set(before.values()) & {r.uid for r in after.values()}
        assert all(store.claim_of(i) is None for i in ids)
