"""``postwise db``: schema migrations."""

from __future__ import annotations

import typer

from postwise.cli.context import console, open_database
from postwise.storage import migrate

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command()
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    db = open_database()
    migrate.upgrade(db, revision)
    console.print(f"database at revision [bold]{migrate.current_revision(db)}[/]")


@app.command()
def current() -> None:
    """Print the database's revision and the newest one available."""
    db = open_database()
    console.print(f"current: {migrate.current_revision(db)}  head: {migrate.head_revision(db)}")
