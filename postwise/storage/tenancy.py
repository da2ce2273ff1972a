"""Workspace isolation enforced by the session itself, not by each query.

A session bound to a workspace adds ``workspace_id = :ws`` to every ORM SELECT, UPDATE
and DELETE that touches a ``WorkspaceOwned`` table (joins, aliases and subqueries
included), stamps new rows with the workspace, and refuses rows or bulk inserts that
name another one. Code can opt out only by using ``Database.system()``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from postwise.storage.tables import WorkspaceOwned

_KEY = "workspace_id"


class CrossWorkspaceWrite(RuntimeError):
    """A programming error: code tried to write a row into another workspace."""


def bind(session: Session, workspace_id: int) -> None:
    session.info[_KEY] = workspace_id


def workspace_of(session: Session) -> int:
    try:
        return int(session.info[_KEY])
    except KeyError:
        raise RuntimeError("session is not bound to a workspace") from None


@event.listens_for(Session, "do_orm_execute")
def _scope_statement(state: ORMExecuteState) -> None:
    workspace_id = state.session.info.get(_KEY)
    if workspace_id is None:
        return
    if state.is_select or state.is_update or state.is_delete:
        if state.is_column_load or state.is_relationship_load:
            return
        state.statement = state.statement.options(
            with_loader_criteria(
                WorkspaceOwned,
                lambda cls: cls.workspace_id == workspace_id,
                include_aliases=True,
            )
        )
    elif state.is_insert:
        params: Any = state.parameters
        rows = params if isinstance(params, list) else [params] if params else []
        for row in rows:
            if isinstance(row, dict) and row.get(_KEY, workspace_id) != workspace_id:
                raise CrossWorkspaceWrite(f"insert names workspace {row.get(_KEY)}")


@event.listens_for(Session, "before_flush")
def _stamp_rows(session: Session, _context: Any, _instances: Any) -> None:
    workspace_id = session.info.get(_KEY)
    if workspace_id is None:
        return
    for obj in list(session.new) + list(session.dirty):
        if not isinstance(obj, WorkspaceOwned):
            continue
        current = obj.workspace_id
        if current is None:
            obj.workspace_id = workspace_id
        elif current != workspace_id:
            raise CrossWorkspaceWrite(
                f"{type(obj).__name__} belongs to workspace {current}, session to {workspace_id}"
            )
