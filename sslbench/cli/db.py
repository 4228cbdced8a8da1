"""`sslbench db upgrade`: bring a results database to the current schema.

Every command already upgrades the database it opens (each migration is one transaction, so an
interrupted upgrade changes nothing); this command does it on purpose and says what it did, e.g.
before pointing several machines at one PostgreSQL database.
"""

from __future__ import annotations

import typer

from sslbench.cli import app
from sslbench.cli.options import DbOption

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
