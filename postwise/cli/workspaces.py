"""``postwise workspace`` and ``postwise apikey``: tenants and their keys."""

from __future__ import annotations

from typing import Any

import typer

from postwise.cli.context import console, open_database, print_json, user_errors
from postwise.workspaces import actions

workspace_app = typer.Typer(help="Workspaces (tenants).", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys of a workspace.", no_args_is_help=True)


@workspace_app.command("create")
def create_workspace(
    name: str,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Create a workspace with an admin API key and a tracking write key (shown once)."""
    db = open_database()
    with user_errors(), db.system() as session:
        created = actions.create_workspace(session, name)
    if as_json:
        print_json(
            {
                "workspace_id": created.workspace_id,
                "name": created.name,
                "api_key": created.api_key,
                "write_key": created.write_key,
            }
        )
        return
    console.print(f"workspace [bold]{created.workspace_id}[/] ({created.name}) created")
    console.print(f"admin API key (shown once): [bold]{created.api_key}[/]")
    console.print(f"tracking write key:         [bold]{created.write_key}[/]")


@workspace_app.command("list")
def list_workspaces(as_json: bool = typer.Option(False, "--json")) -> None:
    """List workspaces."""
    from sqlalchemy import select

    from postwise.storage.tables import Workspace

    db = open_database()
    with db.system() as session:
        rows = [{"workspace_id": w.id, "name": w.name} for w in session.scalars(select(Workspace))]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        console.print(f"{row['workspace_id']}\t{row['name']}")


@workspace_app.command("tracking")
def tracking_mode(
    mode: str = typer.Argument(
        "", help="on (default: track unless a contact objects), consent or off; empty: show."
    ),
    workspace: int = typer.Option(..., "--workspace", "-w", help="Workspace id."),
) -> None:
    """Show or set whether sent mail carries click tracking and the open pixel
    (docs/tracking.md, "Tracking consent")."""
    from postwise.tracking import consent

    db = open_database()
    with user_errors(), db.system() as session:
        if mode:
            current = consent.set_mode(session, workspace, mode)
        else:
            current = consent.mode_of(session, workspace)
    console.print(f"workspace {workspace}: tracking {current}")


@apikey_app.command("create")
def create_key(
    workspace: int = typer.Option(..., "--workspace", "-w", help="Workspace id."),
    scope: list[str] = typer.Option(..., "--scope", "-s", help="Repeat for each scope."),
    name: str = typer.Option("", "--name"),
    kind: str = typer.Option("secret", "--kind", help="'secret' (API) or 'write' (tracking)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create an API key with the given scopes; the key is printed once."""
    db = open_database()
    with user_errors(), db.system() as session:
        issued = actions.create_api_key(session, workspace, scope, name=name, kind=kind)
    if as_json:
        print_json(
            {"id": issued.id, "workspace_id": workspace, "key": issued.key, "scopes": issued.scopes}
        )
        return
    console.print(f"key {issued.id} with scopes {', '.join(issued.scopes)}: [bold]{issued.key}[/]")


@apikey_app.command("revoke")
def revoke_key(key_id: int) -> None:
    """Revoke a key at once; requests with it fail from now on."""
    db = open_database()
    with user_errors(), db.system() as session:
        actions.revoke_api_key(session, key_id)
    console.print(f"key {key_id} revoked")


@apikey_app.command("list")
def list_keys(
    workspace: int = typer.Option(..., "--workspace", "-w"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List a workspace's keys (prefixes only; keys are stored hashed)."""
    db = open_database()
    with db.system() as session:
        rows: list[dict[str, Any]] = [
            {
                "id": k.id,
                "kind": k.kind,
                "name": k.name,
                "prefix": k.prefix,
                "scopes": k.scopes,
                "revoked": k.revoked_at is not None,
            }
            for k in actions.list_api_keys(session, workspace)
        ]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        state = "revoked" if row["revoked"] else "active"
        console.print(
            f"{row['id']}\t{row['kind']}\t{row['prefix']}…\t{state}\t{','.join(row['scopes'])}"
        )
