"""`sslbench db upgrade`: bring a results database to the current schema; `sslbench db merge`:
copy the runs of another results database into this one.

Every command already upgrades the database it opens (each migration is one transaction, so an
interrupted upgrade changes nothing); `upgrade` does it on purpose and says what it did, e.g.
before pointing several machines at one PostgreSQL database.
"""

from __future__ import annotations

from typing import Annotated

import typer

from sslbench.cli import app
from sslbench.cli.options import DbOption
from sslbench.limits import MAX_ID

db_app = typer.Typer(help="Manage the results database.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def upgrade_command(db: DbOption = None) -> None:
    """Migrate the database to the current schema revision (a no-op when it is already there)."""
    from sslbench.store import resolve_db_url
    from sslbench.store.db import display_name, upgrade_database

    url = resolve_db_url(db)
    before, after = upgrade_database(url)
    where = display_name(url)
    if before == after:
        typer.echo(f"{where}: already at schema revision {after}")
    else:
        typer.echo(f"{where}: upgraded from schema revision {before or '(empty)'} to {after}")


@db_app.command("merge")
def merge_command(
    source: Annotated[str, typer.Argument(
        metavar="SOURCE", help="The database to copy runs from: a SQLite file or SQLAlchemy URL "
        "(read, never written).", show_default=False)],
    db: DbOption = None,
    run: Annotated[list[int] | None, typer.Option(
        "--run", metavar="ID", min=1, max=MAX_ID, show_default=False,
        help="Copy this run of SOURCE and all its descendants (repeatable) [default: every "
             "run].")] = None,
) -> None:
    """Copy runs of SOURCE, with their metrics and artifact rows, into --db in one transaction.

    Runs get new ids; a run already in --db (same uid) is skipped, so merging twice copies
    nothing the second time. Files stay where they are: the rows keep their paths.
    """
    from sslbench.store import resolve_db_url
    from sslbench.store.merge import merge_runs

    result = merge_runs(source, resolve_db_url(db), run or None)
    line = (f"copied {_count(result.copied_runs, 'run')} "
            f"({_count(result.metric_rows, 'metric row')}, "
            f"{_count(result.artifacts, 'artifact')}) from {result.source} into {result.target}; "
            f"skipped {result.skipped_runs} already there")
    if result.unparented:
        line += ("; copied without their parent (neither copied nor in the target): source run"
                 f"{'s' if len(result.unparented) > 1 else ''} "
                 f"{', '.join(map(str, result.unparented))}")
    typer.echo(line)


def _count(n: int, noun: str) -> str:
    """`1 234 metric rows`, `1 run`."""
    return f"{n:,}".replace(",", " ") + f" {noun}{'' if n == 1 else 's'}"
