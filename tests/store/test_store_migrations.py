"""The Alembic revisions build exactly the schema the models describe, and upgrades keep data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect

from sslbench.store import Store
from sslbench.store.db import alembic_config, make_engine
from sslbench.store.models import Base


def _schema(engine: Engine) -> dict[str, Any]:
    """Tables with their columns, keys and indexes, as the database reports them."""
    inspector = inspect(engine)
    schema: dict[str, Any] = {}
    for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
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
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
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
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
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
