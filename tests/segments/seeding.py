"""Rows for segment engine tests, written with Core so each test states exactly what is
stored (ids, timestamps to the microsecond, JSON of any type), in a workspace of its own."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, select

from postwise.segments.compiler import compile_members
from postwise.segments.definition import Definition, SchemaContext, parse_definition
from postwise.segments.evaluator import evaluate
from postwise.segments.facts import load_facts
from postwise.segments.references import references
from postwise.storage.database import Database
from postwise.storage.tables import (
    Company,
    Contact,
    Event,
    ListMembership,
    MailingList,
    Workspace,
)

NOW = datetime.fromisoformat("2027-02-25T12:00:00+00:00")

_WORKSPACES = cast(Table, Workspace.__table__)
_COMPANIES = cast(Table, Company.__table__)
_CONTACTS = cast(Table, Contact.__table__)
_LISTS = cast(Table, MailingList.__table__)
_MEMBERSHIPS = cast(Table, ListMembership.__table__)
_EVENTS = cast(Table, Event.__table__)

ATTRIBUTES: Mapping[tuple[str, str], str] = {
    ("contact", "plan"): "string",
    ("contact", "score"): "number",
    ("contact", "vip"): "boolean",
    ("contact", "birthday"): "date",
    ("contact", "tags"): "list",
    ("company", "tier"): "string",
}


def workspace(conn: Connection) -> int:
    result = conn.execute(insert(_WORKSPACES).values(name="segments", created_at=NOW, settings={}))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def company(conn: Connection, ws: int, domain: str, **values: Any) -> int:
    row = {
        "workspace_id": ws,
        "domain": domain,
        "attributes": {},
        "created_at": NOW,
        "updated_at": NOW,
        **values,
    }
    return int(conn.execute(insert(_COMPANIES).values(row)).inserted_primary_key[0])  # type: ignore[index]


def contact(conn: Connection, ws: int, email: str, **values: Any) -> int:
    row = {
        "workspace_id": ws,
        "email": email,
        "email_domain": email.rsplit("@", 1)[-1],
        "status": "subscribed",
        "attributes": {},
        "created_at": NOW,
        "updated_at": NOW,
        **values,
    }
    return int(conn.execute(insert(_CONTACTS).values(row)).inserted_primary_key[0])  # type: ignore[index]


def mailing_list(conn: Connection, ws: int, name: str) -> int:
    row = {"workspace_id": ws, "name": name, "created_at": NOW}
    return int(conn.execute(insert(_LISTS).values(row)).inserted_primary_key[0])  # type: ignore[index]


def subscribe(conn: Connection, ws: int, list_id: int, contact_id: int, status: str) -> None:
    conn.execute(
        insert(_MEMBERSHIPS).values(
            workspace_id=ws,
            list_id=list_id,
            contact_id=contact_id,
            status=status,
            created_at=NOW,
            updated_at=NOW,
        )
    )


def event(
    conn: Connection,
    ws: int,
    contact_id: int | None,
    name: str,
    at: datetime,
    properties: Mapping[str, Any] | None = None,
    type_: str = "track",
) -> None:
    conn.execute(
        insert(_EVENTS).values(
            workspace_id=ws,
            contact_id=contact_id,
            type=type_,
            name=name,
            properties=dict(properties or {}),
            context={},
            occurred_at=at,
            received_at=at,
        )
    )


def parse(doc: Any, segments: Mapping[int, Any] | None = None) -> Definition:
    return parse_definition(doc, SchemaContext(attributes=ATTRIBUTES, segments=segments or {}))


def members(db: Database, defn: Definition, ws: int, now: datetime = NOW) -> set[int]:
    with db.engine.connect() as conn:
        return {int(i) for i in conn.scalars(compile_members(defn, workspace_id=ws, now=now))}


def evaluated(db: Database, defn: Definition, ws: int, now: datetime = NOW) -> set[int]:
    """The contacts the in-memory evaluator admits, each from its own loaded facts."""
    refs = references(defn)
    with db.engine.connect() as conn:
        ids = conn.execute(select(_CONTACTS.c.id).where(_CONTACTS.c.workspace_id == ws))
        out = set()
        for (contact_id,) in ids.all():
            facts = load_facts(conn, ws, int(contact_id), now, refs)
            if evaluate(defn, facts, now):
                out.add(int(contact_id))
        return out


def both(db: Database, defn: Definition, ws: int, now: datetime = NOW) -> set[int]:
    """Members by SQL, after checking that the evaluator agrees."""
    by_sql = members(db, defn, ws, now)
    assert by_sql == evaluated(db, defn, ws, now)
    return by_sql
