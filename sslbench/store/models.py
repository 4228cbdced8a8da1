"""The store's tables: runs, their metric rows and their artifacts (SQLAlchemy 2 typed mappings).

The schema itself is created and changed only by the Alembic revisions in
`sslbench/store/migrations/versions/`; these classes must match them (a test compares the two).
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

RUN_KINDS = ("pretrain", "linear", "knn", "semisup", "supervised", "trial", "bench", "reproduce")
RUN_STATUSES = ("QUEUED", "RUNNING", "COMPLETED", "FAILED", "KILLED", "PRUNED")
FINAL_STATUSES = ("COMPLETED", "FAILED", "KILLED", "PRUNED")

# Named constraints, so that later batch migrations on SQLite can find and alter them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite keeps no offset, so values are stored as UTC wall time and read back with `UTC` attached.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps timezone-aware UTC times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class NaNFloat(TypeDecorator[float]):
    """A float column that round-trips NaN: SQLite cannot store NaN, so it is kept as NULL."""

    impl = Float
    cache_ok = True

    def process_bind_param(self, value: float | None, dialect: Dialect) -> float | None:
        return None if value is None or math.isnan(value) else float(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> float:
        return math.nan if value is None else float(value)


# Alembic's version table for the store. Not the default `alembic_version`: Optuna's RDB storage
# keeps its own Alembic version there, and one PostgreSQL database may hold both (a sweep shared by
# several machines). Databases made before the rename are moved over on open (see store.db).
VERSION_TABLE = "sslbench_alembic_version"
LEGACY_VERSION_TABLE = "alembic_version"


def new_uid() -> str:
    """A fresh run uid or claim token: 32 random hex digits (uuid4)."""
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    """Declarative base holding the store's metadata."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Run(Base):
    """One pretraining, evaluation, sweep trial or benchmark, with its provenance."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), index=True
    )
    sweep_id: Mapped[str | None] = mapped_column(String(255), index=True)
    trial_number: Mapped[int | None] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(255))
    backbone: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    config_json: Mapped[str] = mapped_column(Text)
    config_hash: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(Integer)
    git_commit: Mapped[str | None] = mapped_column(String(64))
    git_dirty: Mapped[bool | None]
    host: Mapped[str] = mapped_column(String(255))
    device: Mapped[str | None] = mapped_column(String(255))
    world_size: Mapped[int] = mapped_column(Integer, default=1)
    versions_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    summary_json: Mapped[str | None] = mapped_column(Text)
    run_dir: Mapped[str | None] = mapped_column(Text)  # absolute; checkpoints live here
    pid: Mapped[int | None] = mapped_column(Integer)  # the process running it on `host`
    resumes: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Globally unique: names the run's folder and is written into every file the run writes, so
    # no two databases (or runs) can take each other's files for their own.
    uid: Mapped[str] = mapped_column(String(32), unique=True, default=new_uid)
    # The token of the process that holds the run (NULL when none does): every change of state
    # and every write is conditional on it, so two processes never both own a run.
    claim: Mapped[str | None] = mapped_column(String(32))


class Metric(Base):
    """One logged scalar: `value` of `key` at a step and/or epoch of a run."""

    __tablename__ = "metrics"
    # (run_id, key) serves both "all metrics of a run" and "one curve of a run".
    __table_args__ = (Index("ix_metrics_run_id_key", "run_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    step: Mapped[int | None] = mapped_column(Integer)
    epoch: Mapped[int | None] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(NaNFloat, nullable=True)  # NULL stands for NaN
    time: Mapped[datetime] = mapped_column(UTCDateTime)


class Artifact(Base):
    """A file a run produced (checkpoint, embeddings, plot), with its content hash."""

    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)  # checkpoints pass 2 GiB
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
