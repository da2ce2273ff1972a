"""What the evaluator knows about one contact, and how to load only what a definition needs.

``ContactFacts`` is plain data (rows as mappings), so the evaluator can decide for one
contact without the database: real-time decisions, tests, and the property test that
holds it to the compiled SQL. ``load_facts`` reads what ``references(defn)`` names:
the events of the referenced names only, the lists referenced only, the company only
when a company field or an account condition needs it, and the company's other
contacts only for account conditions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Table, and_, or_, select
from sqlalchemy.orm import Session

from postwise.core.clock import as_utc
from postwise.core.errors import NotFound
from postwise.segments.references import References
from postwise.storage.tables import Company, Contact, Event, ListMembership

_CONTACTS = cast(Table, Contact.__table__)
_COMPANIES = cast(Table, Company.__table__)
_EVENTS = cast(Table, Event.__table__)
_MEMBERSHIPS = cast(Table, ListMembership.__table__)


@dataclass(frozen=True)
class EventFact:
    name: str
    type: str
    properties: Mapping[str, Any]
    occurred_at: datetime


@dataclass
class ContactFacts:
    """One contact's row, its company's row, list statuses by list id, its events, and
    (for account conditions) the facts of every contact of its company, itself included."""

    contact: Mapping[str, Any]
    company: Mapping[str, Any] | None = None
    lists: Mapping[int, str] = field(default_factory=dict)
    events: Sequence[EventFact] = ()
    company_contacts: Sequence[ContactFacts] = ()


def load_facts(
    conn: Connection | Session,
    workspace_id: int,
    contact_id: int,
    now: datetime,
    refs: References,
) -> ContactFacts:
    """The facts ``refs`` needs about ``contact_id``; raises NotFound if it is gone.

    Events of a name that every condition reads through a "last N" window are loaded
    from ``now - N`` on only (``refs.lookback``): a busy contact's years of page views
    are not read to decide "viewed pricing this week". The facts are therefore good
    for evaluation at ``now`` or later, not earlier.
    """
    row = conn.execute(
        select(_CONTACTS).where(
            _CONTACTS.c.workspace_id == workspace_id, _CONTACTS.c.id == contact_id
        )
    ).first()
    if row is None:
        raise NotFound(f"no contact {contact_id}", code="contact_not_found", field="contact_id")
    contact = dict(row._mapping)
    company_id = contact.get("company_id")
    company = None
    if company_id is not None and (refs.uses_company or refs.account_level):
        found = conn.execute(
            select(_COMPANIES).where(
                _COMPANIES.c.workspace_id == workspace_id, _COMPANIES.c.id == company_id
            )
        ).first()
        company = dict(found._mapping) if found is not None else None
    rows = [contact]
    if refs.account_level and company_id is not None:
        peers = conn.execute(
            select(_CONTACTS).where(
                _CONTACTS.c.workspace_id == workspace_id,
                _CONTACTS.c.company_id == company_id,
                _CONTACTS.c.id != contact_id,
            )
        ).all()
        rows += [dict(p._mapping) for p in peers]
    ids = [int(r["id"]) for r in rows]
    lists = _lists(conn, workspace_id, ids, refs)
    events = _events(conn, workspace_id, ids, refs, now)
    facts = [
        ContactFacts(r, company, lists.get(int(r["id"]), {}), events.get(int(r["id"]), []))
        for r in rows
    ]
    if refs.account_level and company_id is not None:
        for one in facts:
            one.company_contacts = facts
    return facts[0]


def _lists(
    conn: Connection | Session, workspace_id: int, ids: list[int], refs: References
) -> dict[int, dict[int, str]]:
    out: dict[int, dict[int, str]] = defaultdict(dict)
    if not refs.list_ids:
        return out
    rows = conn.execute(
        select(_MEMBERSHIPS.c.contact_id, _MEMBERSHIPS.c.list_id, _MEMBERSHIPS.c.status).where(
            _MEMBERSHIPS.c.workspace_id == workspace_id,
            _MEMBERSHIPS.c.contact_id.in_(ids),
            _MEMBERSHIPS.c.list_id.in_(sorted(refs.list_ids)),
        )
    )
    for contact_id, list_id, status in rows:
        out[int(contact_id)][int(list_id)] = str(status)
    return out


def _events(
    conn: Connection | Session,
    workspace_id: int,
    ids: list[int],
    refs: References,
    now: datetime,
) -> dict[int, list[EventFact]]:
    out: dict[int, list[EventFact]] = defaultdict(list)
    names = sorted(refs.all_event_names)
    if not names:
        return out
    always = [n for n in names if n not in refs.lookback]
    which: list[ColumnElement[bool]] = [_EVENTS.c.name.in_(always)] if always else []
    which += [
        and_(_EVENTS.c.name == name, _EVENTS.c.occurred_at >= now - span)
        for name, span in sorted(refs.lookback.items())
        if name in names
    ]
    rows = conn.execute(
        select(
            _EVENTS.c.contact_id,
            _EVENTS.c.name,
            _EVENTS.c.type,
            _EVENTS.c.properties,
            _EVENTS.c.occurred_at,
        ).where(
            _EVENTS.c.workspace_id == workspace_id,
            _EVENTS.c.contact_id.in_(ids),
            or_(*which),
        )
    )
    for contact_id, name, type_, properties, occurred_at in rows:
        out[int(contact_id)].append(
            EventFact(str(name), str(type_), properties or {}, as_utc(occurred_at))
        )
    return out
