"""``postwise demo load``: a workspace of realistic B2B demo data (see postwise/demo)."""

from __future__ import annotations

import time

import typer
from rich.table import Table

from postwise.cli.context import console, err_console, fail, open_database, print_json, user_errors
from postwise.demo import loader
from postwise.storage import migrate
from postwise.storage.database import Database

demo_app = typer.Typer(help="Demo data.", no_args_is_help=True)


def _require_schema(db: Database) -> None:
    current, head = migrate.current_revision(db), migrate.head_revision(db)
    if current != head:
        fail(
            f"the database is at revision {current or 'none (empty)'}, this version needs "
            f"{head}: run `postwise db upgrade` first"
        )


@demo_app.command("load")
def load(
    seed: int = typer.Option(7, "--seed", help="Same seed, same people and companies."),
    contacts: int = typer.Option(2000, "--contacts", help="How many contacts."),
    companies: int = typer.Option(160, "--companies", help="How many companies."),
    again: bool = typer.Option(
        False, "--again", help="Load another copy even if a demo workspace exists."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Load the demo audience into a new workspace; prints its id and keys (shown once)."""
    db = open_database()
    try:
        _require_schema(db)
        existing = None if again else loader.find_demo_workspace(db)
        if existing is not None:
            if as_json:
                print_json(
                    {"workspace_id": existing.workspace_id, "name": existing.name, "created": False}
                )
            else:
                console.print(
                    f"demo workspace [bold]{existing.workspace_id}[/] ({existing.name}) is already "
                    "loaded; make a key for it with `postwise apikey create --workspace "
                    f"{existing.workspace_id} --scope admin`, or pass --again for another copy"
                )
            return
        if not as_json:
            err_console.print(f"loading {contacts} contacts at {companies} companies ...")
        started = time.perf_counter()
        with user_errors():
            result = loader.load_demo(db, seed=seed, contacts=contacts, companies=companies)
        seconds = round(time.perf_counter() - started, 2)
    finally:
        db.dispose()
    if as_json:
        print_json(
            {
                "workspace_id": result.workspace_id,
                "name": result.name,
                "api_key": result.api_key,
                "write_key": result.write_key,
                "counts": result.counts,
                "created": True,
                "seconds": seconds,
            }
        )
        return
    console.print(
        f"demo workspace [bold]{result.workspace_id}[/] ({result.name}) loaded in {seconds}s"
    )
    counts = Table(show_header=False, box=None, padding=(0, 2))
    for name, count in result.counts.items():
        counts.add_row(name.replace("_", " "), f"{count:,}")
    console.print(counts)
    console.print(f"admin API key (shown once): [bold]{result.api_key}[/]")
    console.print(f"tracking write key:         [bold]{result.write_key}[/]")
