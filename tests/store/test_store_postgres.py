"""The same store on a real PostgreSQL server, started by the test on a Unix socket.

Skipped when no PostgreSQL server binaries (Debian's `postgresql`) or no driver (`psycopg` or
`psycopg2`) are installed.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from glob import glob
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from sslbench.errors import UserError
from sslbench.store import Store
from sslbench.store.db import make_engine
from sslbench.store.models import Base


def _server_bin() -> Path | None:
    found = shutil.which("pg_ctl") or next(
        iter(sorted(glob("/usr/lib/postgresql/*/bin/pg_ctl"))), None
    )
    return Path(found).parent if found else None


def _has_driver() -> bool:
    return any(importlib.util.find_spec(name) for name in ("psycopg", "psycopg2"))


def _run(args: list[str], as_user: str | None) -> None:
    command = ["runuser", "-u", as_user, "--", *args] if as_user else args
    subprocess.run(command, check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    """A URL of a throw-away PostgreSQL cluster, reachable only through a Unix socket."""
    bin_dir = _server_bin()
    if bin_dir is None or not _has_driver():
        pytest.skip("needs PostgreSQL server binaries and psycopg (or psycopg2)")
    # PostgreSQL refuses to run as root: run it as the `postgres` user in a directory it owns.
    as_user = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="sslbench-pg-"))
    if as_user:
        shutil.chown(root, as_user)
    data, log = root / "data", root / "server.log"
    try:
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "sslbench",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            as_user,
        )
        options = f"-k {root} -c listen_addresses='' -F"
        _run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-o",
                options,
                "-w",
                "start",
            ],
            as_user,
        )
        try:
            yield f"postgresql://sslbench@/postgres?host={root}"
        finally:
            _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], as_user)
    finally:
        shutil.rmtree(root, ignore_errors=True)


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
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()


def test_foreign_postgresql_database_is_refused(pg_server: str) -> None:
    engine = make_engine(pg_server)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("CREATE DATABASE other"))
    finally:
        engine.dispose()
    other = pg_server.replace("/postgres?", "/other?")
    engine = make_engine(other)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE runs (id serial PRIMARY KEY)"))
    finally:
        engine.dispose()
    with pytest.raises(UserError, match="is not an sslbench database"):
        Store.open(other)
