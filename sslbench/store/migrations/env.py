"""Alembic environment of the sslbench store.

Driven only from `sslbench.store.db` (no alembic.ini): the caller opens the connection, holds the
write lock, and passes the connection in `config.attributes["connection"]`.
"""

from __future__ import annotations

from alembic import context

from sslbench.store.models import VERSION_TABLE, Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("sslbench migrations run through sslbench.store.db with an open connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table instead
    compare_type=True,
    version_table=VERSION_TABLE,  # not `alembic_version`: Optuna's tables may share the database
)
with context.begin_transaction():
    context.run_migrations()
