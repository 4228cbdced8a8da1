"""Where the store lives and how it is opened: URL resolution, engine set-up, migrations.

Opening a database never runs `create_all`: a new or empty database is brought to the head
Alembic revision, one at an older revision is upgraded, and anything else (a file that is not
SQLite, a SQLite file with tables but no sslbench schema version) is refused with a `UserError`
before a single byte of it is written.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import NullPool, StaticPool

from sslbench.errors import UserError
from sslbench.store.models import LEGACY_VERSION_TABLE, VERSION_TABLE

DB_ENV_VAR = "SSLBENCH_DB"
DEFAULT_DB = "sslbench.sqlite"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
STORE_TABLES = frozenset({"runs", "metrics", "artifacts"})
SQLITE_PRAGMAS = (
    "PRAGMA busy_timeout=30000",  # first, so that switching to WAL waits for other writers
    "PRAGMA foreign_keys=ON",
    "PRAGMA journal_mode=WAL",
)
NOT_OURS_HINT = "pass --db with another path"  # what to do with a database that is not ours
# Any fixed key: serialises concurrent first-time migrations of one PostgreSQL database.
_PG_MIGRATION_LOCK = 0x551BE4C4


def resolve_db_url(db: str | None, *, option: str = "--db") -> str:
    """The SQLAlchemy URL for `--db`: its value, else `$SSLBENCH_DB`, else ./sslbench.sqlite.

    A value containing `://` is a SQLAlchemy URL and is used as is; anything else is a file path
    and becomes `sqlite:///<absolute path>`. `option` names the value in error messages (another
    database argument, such as `db merge`'s SOURCE).
    """
    value = db or os.environ.get(DB_ENV_VAR) or DEFAULT_DB
    if "://" in value:
        try:
            make_url(value).get_dialect()
        except ArgumentError as exc:
            raise UserError(f"{option} {value!r} is not a valid database URL ({exc})") from None
        except NoSuchModuleError:
            raise UserError(f"{option} {value!r}: no database driver for "
                            f"{value.split('://')[0]!r}") from None
        return value
    try:
        path = Path(value).expanduser().absolute()
        if not path.parent.is_dir():
            raise UserError(f"directory {str(path.parent)!r} for {option} {value!r} does not "
                            "exist")
        if path.is_dir():
            raise UserError(f"{option} {value!r} is a folder; pass a database file")
    except (OSError, ValueError, RuntimeError) as exc:  # a NUL byte, an unknown ~user, ENAMETOOLONG
        raise UserError(f"{option} {value!r} is not a usable path ({exc})") from None
    return f"sqlite:///{path}"


def sqlite_path(url: str | URL) -> Path | None:
    """The file behind a SQLite URL; None for other backends and in-memory SQLite."""
    sa_url = make_url(url)
    if sa_url.get_backend_name() != "sqlite" or sa_url.database in (None, "", ":memory:"):
        return None
    return Path(sa_url.database)


def default_runs_root(url: str) -> Path:
    """The folder of a database's run files: beside a SQLite file (``results.sqlite`` →
    ``results.runs``), else ``./sslbench.runs``. Each run's folder in it is named by its uid."""
    path = sqlite_path(url)
    return path.with_name(path.stem + ".runs") if path else Path("sslbench.runs").absolute()


def display_name(url: str) -> str:
    """How a database is named in messages: the file path, or the URL without its password."""
    path = sqlite_path(url)
    return str(path) if path else make_url(url).render_as_string(hide_password=True)


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the store's migrations, without any alembic.ini.

    To write the next revision, from a checkout:
    `command.revision(alembic_config(conn), message="...", autogenerate=True)` with `conn` open on
    a database at the current head.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite connections get WAL, a 30 s busy timeout and foreign keys."""
    sa_url = _with_available_driver(make_url(url))
    try:
        engine = create_engine(sa_url)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise UserError(f"no database driver for {display_name(url)!r} ({exc})") from None
    if sa_url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _set_sqlite_pragmas)
    return engine


def open_engine(url: str, *, create: bool, read: bool = False) -> tuple[Engine, bool]:
    """An engine on a database holding the current store schema, and whether it is a read-only
    snapshot.

    `create=False` (commands that need existing runs) refuses a SQLite file that does not exist
    instead of creating it. An existing database is first inspected without writing to it. A
    SQLite file that cannot be written (its file or its folder is read-only) is, for `read`
    commands, copied into memory and upgraded there (the file is never touched); for the
    others, a `UserError`.
    """
    path = sqlite_path(url)
    if path is not None and not path.exists():
        if not create:
            raise UserError(
                f"no database at {path} (run `sslbench pretrain ...` first or pass --db)"
            )
        check_writable(url)
        needs_migration, read_only = True, False
        engine = make_engine(url)
    elif path is not None and not (_writable(path) and _writable(path.parent)):
        if not read:
            check_writable(url)
        engine, read_only = _snapshot_engine(path), True
        with engine.connect() as conn:
            needs_migration = _schema_revision(conn, url) != (head_revision(), False)
    else:
        needs_migration, read_only = stored_revision(url) != (head_revision(), False), False
        engine = make_engine(url)
    if needs_migration:
        try:
            _migrate(engine, url)
        except BaseException:
            engine.dispose()
            raise
    return engine, read_only


def check_writable(url: str) -> None:
    """A SQLite database that cannot be created or written here (a read-only file or folder)
    is bad input for a command that records: one line, before anything is done."""
    path = sqlite_path(url)
    if path is None:
        return
    if not path.exists() and not _writable(path.parent):
        raise UserError(f"cannot create DB {str(path)!r}: folder {str(path.parent)!r} is "
                        "read-only; pass --db with a writable path")
    if path.exists() and not (_writable(path) and _writable(path.parent)):
        raise UserError(f"DB {str(path)!r} is read-only (the file or its folder cannot be "
                        "written); pass --db with a writable copy")


def _writable(path: Path) -> bool:
    """Whether this process may write ``path`` (a file, or a folder to create files in)."""
    return os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0))


def _snapshot_engine(path: Path) -> Engine:
    """An engine on an in-memory copy of a SQLite file opened read-only. A database in WAL mode
    in a read-only folder cannot make its shared-memory file; it is then read as immutable."""
    memory = sqlite3.connect(":memory:", check_same_thread=False)
    error: Exception = sqlite3.DatabaseError("unreadable")
    for options in ("mode=ro", "mode=ro&immutable=1"):
        try:
            source = sqlite3.connect(f"{path.absolute().as_uri()}?{options}", uri=True)
        except sqlite3.Error:
            continue
        try:
            source.backup(memory)
            break
        except sqlite3.DatabaseError as exc:
            error = exc
        finally:
            source.close()
    else:
        memory.close()
        raise UserError(f"cannot open DB {str(path)!r} read-only ({_first_line(error)})")
    return create_engine("sqlite://", creator=lambda: memory, poolclass=StaticPool)


def stored_revision(url: str, *, hint: str = NOT_OURS_HINT) -> tuple[str | None, bool]:
    """The store revision of an existing database, read without writing to it, and whether it is
    still in the legacy version table (see `_schema_revision`, and its `hint`)."""
    probe = _probe_engine(url, sqlite_path(url))
    try:
        with probe.connect() as conn:
            return _schema_revision(conn, url, hint=hint)
    except DBAPIError as exc:
        raise UserError(f"cannot open DB {display_name(url)!r} ({_first_line(exc.orig)})") from None
    finally:
        probe.dispose()


def upgrade_database(url: str) -> tuple[str | None, str | None]:
    """`sslbench db upgrade`: bring an existing database to the head revision; the revisions
    before and after. Every migration runs in one transaction (SQLite and PostgreSQL both have
    transactional DDL), so an interrupted upgrade leaves the database as it was."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise UserError(f"no database at {path} (nothing to upgrade)")
    check_writable(url)
    before, _ = stored_revision(url)
    engine, _ = open_engine(url, create=False)
    engine.dispose()
    return before, head_revision()


def _migrate(engine: Engine, url: str) -> None:
    """Bring the database to the head revision, holding the write lock so that only one of several
    processes opening a new database at once creates the schema."""
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:
            # A batch migration copies a table and drops the original; with foreign keys on,
            # that DROP would cascade-delete every metric and artifact of every run. The pragma
            # only takes effect outside a transaction, hence before BEGIN.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        revision, legacy = _schema_revision(conn, url)
        if legacy:
            _move_legacy_version(conn, revision)
        if revision != head_revision():  # another process may have done it
            command.upgrade(alembic_config(conn), "head")
        if sqlite and (broken := conn.exec_driver_sql("PRAGMA foreign_key_check").first()):
            conn.rollback()
            raise UserError(f"DB {display_name(url)!r}: migration left a dangling reference "
                            f"({broken[0]} → {broken[2]}); nothing was changed")
        conn.commit()
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")


def _move_legacy_version(conn: Connection, revision: str | None) -> None:
    """A store made before the version table was renamed: record its revision in
    `VERSION_TABLE` and take it out of `alembic_version` (dropped when nothing else is left)."""
    command.stamp(alembic_config(conn), revision)  # creates VERSION_TABLE (see migrations/env.py)
    conn.execute(text(f"DELETE FROM {LEGACY_VERSION_TABLE} WHERE version_num = :v"),
                 {"v": revision})
    left = conn.execute(text(f"SELECT COUNT(*) FROM {LEGACY_VERSION_TABLE}")).scalar_one()
    if not left:
        conn.execute(text(f"DROP TABLE {LEGACY_VERSION_TABLE}"))


def _schema_revision(
    conn: Connection, url: str, *, hint: str = NOT_OURS_HINT
) -> tuple[str | None, bool]:
    """The store revision of the database on `conn` (None when it has no store yet), and whether
    it is still recorded in the legacy `alembic_version` table.

    Raises `UserError` when the database is not an sslbench database or not a database at all
    (the message ends with `hint`, what to do instead).
    Other applications' tables are tolerated on PostgreSQL (e.g. Optuna's study tables in the
    database a sweep shares across machines), never on a SQLite file.
    """

    def not_ours(reason: str) -> UserError:
        return UserError(
            f"DB {display_name(url)!r} is not an sslbench database ({reason}); {hint}"
        )

    try:
        tables = set(inspect(conn).get_table_names())
        revision = _version(conn, VERSION_TABLE) if VERSION_TABLE in tables else None
        legacy = None
        if revision is None and LEGACY_VERSION_TABLE in tables:
            legacy = _version(conn, LEGACY_VERSION_TABLE)
    except DBAPIError as exc:
        raise not_ours(_first_line(exc.orig)) from None
    if legacy is not None and legacy.startswith("sslbench_"):  # ours, before the rename
        revision = legacy
    elif legacy is not None and tables & STORE_TABLES:
        raise not_ours(f"unknown schema revision {legacy!r}; made by a newer sslbench?")
    shared = conn.dialect.name == "postgresql" and not tables & STORE_TABLES
    if revision is None and (tables <= {VERSION_TABLE, LEGACY_VERSION_TABLE} or shared):
        return None, False  # new, downgraded to base, or another application's database
    if revision is None:
        if legacy is not None:
            raise not_ours(f"unknown schema revision {legacy!r}; made by a newer sslbench?")
        shown = ", ".join(sorted(tables)[:5])
        raise not_ours(f"it has tables ({shown}) but no sslbench schema version")
    if revision not in _known_revisions():
        raise not_ours(f"unknown schema revision {revision!r}; made by a newer sslbench?")
    if missing := STORE_TABLES - tables:
        raise not_ours(f"tables {', '.join(sorted(missing))} are missing")
    return revision, legacy is not None


def _version(conn: Connection, table: str) -> str | None:
    context = MigrationContext.configure(conn, opts={"version_table": table})
    heads = context.get_current_heads()
    if len(heads) > 1:
        raise UserError(f"DB version table {table!r} holds {len(heads)} revisions "
                        f"({', '.join(sorted(heads))}) where there must be one; it was edited by "
                        "hand or by another tool: restore a backup")
    return heads[0] if heads else None


@contextmanager
def read_snapshot(url: str) -> Iterator[Connection]:
    """A connection that reads one consistent snapshot of an existing database and never writes
    to it: what other processes commit meanwhile is not seen. A SQLite file is opened read-only
    in one read transaction; another backend in a read-only REPEATABLE READ transaction."""
    path = sqlite_path(url)
    engine = _probe_engine(url, path)
    try:
        with engine.connect() as conn:
            if path is None:
                conn.execution_options(isolation_level="REPEATABLE READ",
                                       postgresql_readonly=True)
            else:  # the first query takes the snapshot that every later one reads
                conn.exec_driver_sql("BEGIN")
            yield conn
    finally:
        engine.dispose()


def _probe_engine(url: str, path: Path | None) -> Engine:
    """An engine that only looks: SQLite files are opened read-only and without our pragmas
    (switching a foreign file to WAL would rewrite its header), in autocommit mode (the driver
    begins no transaction of its own, so that `read_snapshot` can begin one)."""
    if path is None:
        return make_engine(url)
    if not path.is_file():
        raise UserError(f"--db {str(path)!r} is not a file")
    uri = f"{path.absolute().as_uri()}?mode=ro"
    return create_engine(
        "sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, isolation_level=None),
        poolclass=NullPool,
    )


def _set_sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _with_available_driver(sa_url: URL) -> URL:
    """`postgresql://` means psycopg2 to SQLAlchemy; use psycopg 3 when only it is installed."""
    if (
        sa_url.drivername == "postgresql"
        and importlib.util.find_spec("psycopg2") is None
        and importlib.util.find_spec("psycopg") is not None
    ):
        return sa_url.set(drivername="postgresql+psycopg")
    return sa_url


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str | None:
    return _script().get_current_head()


def _known_revisions() -> set[str]:
    return {script.revision for script in _script().walk_revisions()}
