"""Run lifecycle: where a run keeps its checkpoints, which process runs it, how often it resumed.

- `run_dir`: the run's output folder (absolute), so `sslbench resume RUN` finds the checkpoint
  from any working directory;
- `pid`: the process that is running it on `host`; a RUNNING run whose process is gone on this
  host is marked KILLED at once, without waiting for its heartbeat to go stale;
- `resumes`: how many times `sslbench resume` continued it.

Revision ID: sslbench_0002
Revises: sslbench_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "sslbench_0002"
down_revision = "sslbench_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the three columns; existing runs get no folder, no process and zero resumes."""
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("run_dir", sa.Text(), nullable=True))
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("resumes", sa.Integer(), nullable=False,
                                   server_default=sa.text("0")))


def downgrade() -> None:
    """Drop the three columns."""
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("resumes")
        batch.drop_column("pid")
        batch.drop_column("run_dir")
