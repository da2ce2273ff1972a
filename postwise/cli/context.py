"""What every command needs: settings, a migrated database, and a way to fail clearly."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console

from postwise.core.errors import PostwiseError
from postwise.core.logging import configure_logging
from postwise.core.settings import get_settings
from postwise.storage.database import Database

console = Console()
err_console = Console(stderr=True)


def open_database() -> Database:
    settings = get_settings()
    configure_logging(settings)
    return Database(settings.resolved_database_url())


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a PostwiseError into one readable line and exit status 2; no tracebacks."""
    try:
        yield
    except PostwiseError as exc:
        details = "".join(f"\n  - {e.field}: {e.message}" for e in exc.errors[1:])
        fail(f"{exc}{details}", code=2)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str, ensure_ascii=False) + "\n")
