"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from glob import glob
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def repo() -> Path:
    """The root of this checkout (a child Python process imports sslbench from here)."""
    return REPO


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test in its own folder (checkpoints go to ./runs) with no SSLBENCH_DB leaking
    in."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SSLBENCH_DB", raising=False)
    return tmp_path


def _table_rows(db: Path) -> dict[str, list[tuple]]:
    """Every row of every table of a SQLite file, in a stable order."""
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        rows = {t: sorted(con.execute(f"select * from {t}").fetchall(), key=repr) for t in tables}
    con.close()
    return rows


@pytest.fixture(scope="session")
def table_rows() -> Callable[[Path], dict[str, list[tuple]]]:
    """``table_rows(db)``: every row of every table (to check that a command changed none)."""
    return _table_rows


@pytest.fixture(scope="session")
def fmnist_dir() -> Path:
    """The root holding `fashion-mnist/*.gz` (pass it as `data_dir`): `../shared/datasets` beside
    the checkout, else where sslbench's own discovery finds it ($SSLBENCH_DATA, the user cache,
    /usr/share/datasets); the test is skipped if it is nowhere."""
    if (SHARED_DATASETS / "fashion-mnist" / "train-images-idx3-ubyte.gz").is_file():
        return SHARED_DATASETS
    from sslbench.data import locate

    found = locate("fashion-mnist")
    if found.folder is None:
        pytest.skip("real Fashion-MNIST not available: looked in "
                    + ", ".join(map(str, found.searched)))
    return found.folder.parent


# -- a throw-away PostgreSQL server (store and sweep tests) ---------------------------------


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


@pytest.fixture(scope="session")
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


# -- runs with a real checkpoint, without training (export, disk and transfer tests) ---------


@pytest.fixture
def pg_database(pg_server: str) -> Callable[[str], str]:
    """Make a fresh database NAME on the test server; its URL (the same form as ``pg_server``)."""

    def create(name: str) -> str:
        from sqlalchemy import text

        from sslbench.store.db import make_engine

        engine = make_engine(pg_server)
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(f"CREATE DATABASE {name}"))
        finally:
            engine.dispose()
        return pg_server.replace("/postgres?", f"/{name}?")

    return create


@pytest.fixture
def trained_run() -> Callable[..., int]:
    """``trained_run(db, out_dir, method="simclr", dataset="synthetic", **overrides)``: records a
    COMPLETED pretrain run whose checkpoint (in ``out_dir/<id>/``) holds a freshly initialised
    method with non-trivial BatchNorm statistics, as `sslbench pretrain` would lay it out; its id.
    """

    def make(db: str, out_dir: Path, method: str = "simclr", dataset: str = "synthetic",
             **overrides: object) -> int:
        import torch

        from sslbench.data import get_info
        from sslbench.methods import build_method
        from sslbench.resolve import resolve_config
        from sslbench.store import Store
        from sslbench.train.checkpoint import CHECKPOINT_NAME, save_checkpoint

        cfg = resolve_config(method, flags={"data.dataset": dataset, **overrides})
        torch.manual_seed(0)
        model = build_method(cfg, get_info(dataset).channels)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):  # so that eval mode matters
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
        with Store.open(db) as store:
            run_id = store.create_run(kind="pretrain", method=method, dataset=dataset,
                                      config=cfg.to_dict(), seed=cfg.train.seed,
                                      backbone=cfg.model.backbone)
            run_dir = out_dir / str(run_id)
            run_dir.mkdir(parents=True)
            save_checkpoint(run_dir / CHECKPOINT_NAME, {"format": 2, "method": model.state_dict()})
            store.set_run_dir(run_id, run_dir)
            store.add_artifact(run_id, "checkpoint", run_dir / CHECKPOINT_NAME)
            store.finish_run(run_id, "COMPLETED")
        return run_id

    return make
