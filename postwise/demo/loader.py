"""Writing the demo audience into a new workspace, through the same actions real data uses.

Companies, contacts, attributes, lists and subscriptions go through the domain write
functions, so the demo obeys every rule real data does (validation, company linking,
consent records, double opt-in, audit rows). Those functions stamp the current time, so
afterwards the stored times are moved back to the history the generator planned. Events
have no write action yet and are bulk-inserted. Last, ``campaign.py`` adds a campaign
sent to a segment three days ago, with its history rolled up, so the reports have data.

Everything happens in one transaction: a load that fails leaves nothing behind, and the
``demo`` marker in the workspace's settings, which ``find_demo_workspace`` looks for,
exists only once the whole demo does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from postwise.contacts import lists
from postwise.contacts.actions import upsert_contacts
from postwise.contacts.attributes import define_attribute
from postwise.contacts.companies import upsert_company
from postwise.demo.campaign import write_campaign
from postwise.demo.data import IMPORT_CONSENT_TEXT
from postwise.demo.generator import (
    ContactRecord,
    DemoData,
    EventRecord,
    MembershipRecord,
    generate,
)
from postwise.storage import tenancy
from postwise.storage.database import Database
from postwise.storage.tables import (
    AttributeDefinition,
    Company,
    Consent,
    Contact,
    ContactChange,
    Event,
    ListMembership,
    MailingList,
    Workspace,
)
from postwise.workspaces.actions import create_workspace

DEMO_NAME = "Demo (Northwind B2B)"
MARKER = "demo"  # key in Workspace.settings
CONTACT_BATCH = 500
EVENT_BATCH = 2000

T = TypeVar("T")


@dataclass(frozen=True)
class DemoResult:
    workspace_id: int
    name: str
    api_key: str
    write_key: str
    counts: dict[str, int]


@dataclass(frozen=True)
class DemoWorkspace:
    workspace_id: int
    name: str


def find_demo_workspace(db: Database) -> DemoWorkspace | None:
    """The demo workspace loaded earlier, if any, so that a restart need not load another."""
    with db.system() as session:
        for workspace in session.scalars(
            select(Workspace).where(Workspace.name == DEMO_NAME).order_by(Workspace.id)
        ):
            if MARKER in (workspace.settings or {}):
                return DemoWorkspace(workspace.id, workspace.name)
    return None


def load_demo(
    db: Database, *, seed: int = 7, contacts: int = 2000, companies: int = 160
) -> DemoResult:
    """A new workspace holding the demo audience; its admin and write keys are returned once."""
    demo = generate(seed=seed, contacts=contacts, companies=companies)
    with db.system() as session:
        created = create_workspace(session, DEMO_NAME)
        workspace = session.get_one(Workspace, created.workspace_id)
        # The tenant binding on this same session keeps the load one transaction.
        tenancy.bind(session, created.workspace_id)
        counts = _write(session, created.workspace_id, demo)
        workspace.created_at = _earliest(demo) - timedelta(days=1)
        workspace.settings = {
            **(workspace.settings or {}),
            MARKER: {
                "seed": seed,
                "contacts": contacts,
                "companies": companies,
                "loaded_at": demo.now.isoformat(),
            },
        }
    return DemoResult(
        created.workspace_id, created.name, created.api_key, created.write_key, counts
    )


def _batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _earliest(demo: DemoData) -> datetime:
    return min(
        [c.created_at for c in demo.companies]
        + [c.created_at for c in demo.contacts]
        + [m.recorded_at for m in demo.memberships]
    )


def _write(session: Session, workspace_id: int, demo: DemoData) -> dict[str, int]:
    for attribute in demo.attributes:
        define_attribute(
            session, attribute.entity, attribute.name, attribute.type, attribute.description
        )
    company_ids = {
        record.domain: upsert_company(session, record.row())[0].id for record in demo.companies
    }

    contact_ids: dict[str, int] = {}
    # People who signed up on the website arrived through tracking; the rest by import.
    by_source: dict[str, list[ContactRecord]] = {"import": [], "tracking": []}
    for record in demo.contacts:
        by_source["tracking" if record.anonymous_id else "import"].append(record)
    for source, records in by_source.items():
        for chunk in _batches(records, CONTACT_BATCH):
            _upsert(session, chunk, source, contact_ids)

    list_ids: dict[str, int] = {}
    for spec in demo.lists:
        created = lists.create_list(
            session,
            {
                "name": spec.name,
                "description": spec.description,
                "double_opt_in": spec.double_opt_in,
            },
        )
        list_ids[spec.name] = created.id
    consent_ids = _subscribe_all(session, demo, contact_ids, list_ids)

    _backdate(session, demo, company_ids, contact_ids, list_ids, consent_ids)
    for events in _batches(demo.events, EVENT_BATCH):
        session.execute(insert(Event), [_event_row(workspace_id, e, contact_ids) for e in events])
    session.flush()
    sent = write_campaign(session, workspace_id, now=demo.now, seed=demo.seed)
    return {
        "attributes": len(demo.attributes),
        "companies": len(demo.companies),
        "contacts": len(demo.contacts),
        "free_mail_contacts": sum(1 for c in demo.contacts if c.company is None),
        "lists": len(demo.lists),
        "list_memberships": len(demo.memberships),
        # generated history, the campaign's mail and the segment's entered events
        "events": session.scalar(select(func.count()).select_from(Event)) or 0,
        "campaigns_sent": 1,
        "campaign_recipients": sent.recipients,
    }


def _upsert(
    session: Session, chunk: Sequence[ContactRecord], source: str, contact_ids: dict[str, int]
) -> None:
    results = upsert_contacts(session, [record.row() for record in chunk], source=source)
    for record, result in zip(chunk, results, strict=True):
        if result.status != "created" or result.contact_id is None:
            raise RuntimeError(f"demo contact {record.email} was {result.status}: {result.errors}")
        contact_ids[record.email] = result.contact_id


def _subscribe_all(
    session: Session, demo: DemoData, contact_ids: dict[str, int], list_ids: dict[str, int]
) -> dict[tuple[int, int], int]:
    """Every planned membership through subscribe, confirm and unsubscribe; returns the
    consent id of each (list_id, contact_id).

    Memberships that share their consent wording, source and IP go through one
    ``subscribe_many`` call. The rows are then loaded and kept referenced, so that the
    session's identity map (weak by design) still holds them when ``confirm`` and
    ``unsubscribe`` look them up, instead of one SELECT per lookup.
    """
    specs = {spec.name: spec for spec in demo.lists}
    groups: dict[tuple[str, str, str | None], list[int]] = {}
    for m in demo.memberships:
        groups.setdefault((m.list_name, m.source, m.ip), []).append(contact_ids[m.email])
    kept: list[Any] = list(session.scalars(select(MailingList)))
    for (list_name, source, ip), members in groups.items():
        text = IMPORT_CONSENT_TEXT if source == "import" else specs[list_name].consent_text
        consent = lists.ConsentInput(source=source, ip=ip, text=text)
        # Imports carry consent confirmed elsewhere; web sign-ups confirm by clicking.
        lists.subscribe_many(
            session, list_ids[list_name], members, consent, confirmed=source == "import"
        )
    memberships = list(session.scalars(select(ListMembership)))
    kept += memberships
    kept += session.scalars(select(Consent))
    for m in demo.memberships:
        list_id, contact_id = list_ids[m.list_name], contact_ids[m.email]
        if specs[m.list_name].double_opt_in and m.source != "import" and m.confirmed_at:
            lists.confirm(session, list_id, contact_id)
        if m.unsubscribed_at is not None:
            lists.unsubscribe(session, list_id, contact_id, source="system")
    consent_ids: dict[tuple[int, int], int] = {}
    for membership in memberships:
        if membership.consent_id is None:
            raise RuntimeError(f"membership of contact {membership.contact_id} has no consent")
        consent_ids[(membership.list_id, membership.contact_id)] = membership.consent_id
    return consent_ids


def _backdate(
    session: Session,
    demo: DemoData,
    company_ids: dict[str, int],
    contact_ids: dict[str, int],
    list_ids: dict[str, int],
    consent_ids: dict[tuple[int, int], int],
) -> None:
    """Move the times the actions stamped as 'now' to the history the generator planned."""
    session.flush()
    session.execute(
        update(Company),
        [
            {"id": company_ids[c.domain], "created_at": c.created_at, "updated_at": c.updated_at}
            for c in demo.companies
        ],
    )
    session.execute(
        update(Contact),
        [
            {"id": contact_ids[c.email], "created_at": c.created_at, "updated_at": c.updated_at}
            for c in demo.contacts
        ],
    )
    plans: dict[tuple[int, int], MembershipRecord] = {
        (list_ids[m.list_name], contact_ids[m.email]): m for m in demo.memberships
    }
    if plans:
        session.execute(
            update(ListMembership),
            [
                {
                    "list_id": list_id,
                    "contact_id": contact_id,
                    "created_at": m.recorded_at,
                    "updated_at": m.unsubscribed_at or m.confirmed_at or m.recorded_at,
                }
                for (list_id, contact_id), m in plans.items()
            ],
        )
        session.execute(
            update(Consent),
            [
                {
                    "id": consent_ids[key],
                    "recorded_at": m.recorded_at,
                    "confirmed_at": m.confirmed_at,
                }
                for key, m in plans.items()
            ],
        )
    created = {contact_ids[c.email]: c.created_at for c in demo.contacts}
    change_rows = []
    for change_id, contact_id, kind, changes in session.execute(
        select(
            ContactChange.id, ContactChange.contact_id, ContactChange.kind, ContactChange.changes
        )
    ):
        at: datetime | None = created.get(contact_id) if kind == "created" else None
        plan = plans.get((int(changes.get("list_id") or 0), contact_id))
        if plan is not None:
            at = {
                "subscribed": plan.recorded_at,
                "pending": plan.recorded_at,
                "confirmed": plan.confirmed_at,
                "unsubscribed": plan.unsubscribed_at,
            }.get(kind, at)
        if at is not None:
            change_rows.append({"id": change_id, "at": at})
    if change_rows:
        session.execute(update(ContactChange), change_rows)
    origin = _earliest(demo) - timedelta(hours=12)
    session.execute(update(MailingList).values(created_at=origin))
    session.execute(update(AttributeDefinition).values(created_at=origin))


def _event_row(
    workspace_id: int, event: EventRecord, contact_ids: dict[str, int]
) -> dict[str, Any]:
    return {
        "workspace_id": workspace_id,
        "contact_id": contact_ids[event.email] if event.email else None,
        "anonymous_id": event.anonymous_id,
        "type": event.type,
        "name": event.name,
        "properties": event.properties,
        "context": event.context,
        "message_id": event.message_id,
        "occurred_at": event.occurred_at,
        "received_at": event.received_at,
    }
