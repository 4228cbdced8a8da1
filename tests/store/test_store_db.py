"""Opening databases: URL resolution, SQLite pragmas, refusing files that are not ours."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from sslbench.errors import UserError
from sslbench.store import Store, resolve_db_url
from sslbench.store.db import make_engine


def test_resolve_db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SSLBENCH_DB", raising=False)
    assert resolve_db_url(None) == f"sqlite:///{tmp_path / 'sslbench.sqlite'}"
    assert resolve_db_url("x.db") == f"sqlite:///{tmp_path / 'x.db'}"
    monkeypatch.setenv("SSLBENCH_DB", str(tmp_path / "env.sqlite"))
    assert resolve_db_url(None) == f"sqlite:///{tmp_path / 'env.sqlite'}"
    assert resolve_db_url("explicit.sqlite") == f"sqlite:///{tmp_path / 'explicit.sqlite'}"
    url = "postgresql://user:pw@localhost:5432/runs"
    assert resolve_db_url(url) == url


def test_missing_parent_directory_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        resolve_db_url(str(tmp_path / "nowhere" / "runs.sqlite"))


def test_pragmas_on_every_connection(store: Store) -> None:
    engine = make_engine(store.url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    finally:
        engine.dispose()


def test_foreign_keys_are_enforced(store: Store) -> None:
    engine = make_engine(store.url)
    insert_orphan = text(
        "INSERT INTO metrics (run_id, key, value, time) VALUES (999, 'loss', 1.0, '2025-01-01')"
    )
    try:
        with pytest.raises(IntegrityError, match="FOREIGN KEY"), engine.begin() as conn:
            conn.execute(insert_orphan)
    finally:
        engine.dispose()


def test_read_only_open_of_a_missing_file_creates_nothing(db_path: Path) -> None:
    with pytest.raises(UserError, match=f"no database at {db_path}"):
        Store.open(str(db_path), create=False)
    assert list(db_path.parent.iterdir()) == []


def test_reopening_keeps_runs(db_path: Path) -> None:
    with Store.open(str(db_path)) as store:
        run_id = store.create_run(kind="knn", method="byol", dataset="mnist", config={}, seed=3)
    with Store.open(str(db_path), create=False) as store:
        assert [run.id for run in store.list_runs()] == [run_id]


def test_an_empty_file_becomes_a_store(db_path: Path) -> None:
    db_path.touch()
    with Store.open(str(db_path), create=False) as store:
        assert store.list_runs() == []


def _assert_refused(path: Path, reason: str) -> None:
    before = path.read_bytes()
    with pytest.raises(UserError, match=f"is not an sslbench database .*{reason}") as caught:
        Store.open(str(path))
    assert "\n" not in str(caught.value) and "pass --db" in str(caught.value)
    assert path.read_bytes() == before


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 100)
    _assert_refused(path, "not a database")


def test_a_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO runs (name) VALUES ('theirs')")
    conn.close()
    _assert_refused(path, "no sslbench schema version")


def test_a_database_of_another_alembic_project_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('ae1027a6acf')")
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    conn.close()
    _assert_refused(path, "unknown schema revision 'ae1027a6acf'")


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is a folder; pass a database file"):
        Store.open(str(tmp_path))


def test_concurrent_first_opens_create_the_schema_once(db_path: Path) -> None:
    errors: list[BaseException] = []

    def open_and_write(seed: int) -> None:
        try:
            with Store.open(str(db_path)) as store:
                store.create_run(
                    kind="trial",
                    method="byol",
                    dataset="mnist",
                    config={},
                    seed=seed,
                    provenance={"host": "h"},
                )
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=open_and_write, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with Store.open(str(db_path), create=False) as store:
        assert sorted(run.seed for run in store.list_runs()) == [0, 1, 2, 3]
