"""Run identity and claims.

- `uid`: a globally unique id per run (32 hex digits). The run's folder is named by it and every
  checkpoint it writes carries it, so runs of different databases sharing an output folder can
  never overwrite or resume each other's files. Existing runs get a fresh uid each.
- `claim`: the token of the process that holds a RUNNING run; starting, resuming, finishing and
  reaping a run are conditional updates on it (two `sslbench resume` of one run: one proceeds,
  the other is refused). Existing runs are held by no one.

Revision ID: sslbench_0003
Revises: sslbench_0002
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "sslbench_0003"
down_revision = "sslbench_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the columns, give every existing run its own uid, then make uid required and
    unique."""
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("uid", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("claim", sa.String(length=32), nullable=True))
    conn = op.get_bind()
    runs = sa.table("runs", sa.column("id", sa.Integer()), sa.column("uid", sa.String()))
    for (run_id,) in conn.execute(sa.select(runs.c.id)).all():
        conn.execute(sa.update(runs).where(runs.c.id == run_id).values(uid=uuid.uuid4().hex))
    with op.batch_alter_table("runs") as batch:
        batch.alter_column("uid", existing_type=sa.String(length=32), nullable=False)
        batch.create_unique_constraint("uq_runs_uid", ["uid"])


def downgrade() -> None:
    """Drop the two columns (and the uniqueness of uid)."""
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint("uq_runs_uid", type_="unique")
        batch.drop_column("claim")
        batch.drop_column("uid")
