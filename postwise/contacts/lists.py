"""Static lists and subscriptions, each subscription backed by a consent record.

A list with double opt-in holds new subscribers as ``pending`` until they confirm; the
consent row keeps where, when and under which wording they agreed, and is never updated
except to stamp the confirmation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from postwise.core.clock import utcnow
from postwise.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from postwise.core.pagination import Page, keyset_page
from postwise.segments import changes as segment_changes
from postwise.storage.tables import Consent, Contact, ContactChange, ListMembership, MailingList
from postwise.storage.tenancy import workspace_of

CONSENT_SOURCES = ("import", "api", "form", "admin")
MEMBERSHIP_STATUSES = ("subscribed", "unsubscribed", "pending")


@dataclass(frozen=True)
class ConsentInput:
    source: str
    ip: str | None = None
    text: str | None = None


def _check_list_fields(data: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    errors: list[FieldError] = []
    out: dict[str, Any] = {}
    for key in data:
        if key not in ("name", "description", "double_opt_in"):
            errors.append(FieldError(key, "unknown_field", f"unknown field {key!r}"))
    if "name" in data or not partial:
        name = str(data.get("name") or "").strip()
        if not name or len(name) > 200:
            errors.append(FieldError("name", "invalid_name", "name must be 1 to 200 characters"))
        out["name"] = name
    if "description" in data:
        out["description"] = str(data["description"] or "")[:1000]
    if "double_opt_in" in data:
        if not isinstance(data["double_opt_in"], bool):
            errors.append(
                FieldError("double_opt_in", "invalid_type", "double_opt_in must be true or false")
            )
        out["double_opt_in"] = data["double_opt_in"]
    if errors:
        raise ValidationFailed.from_errors(errors)
    return out


def create_list(session: Session, data: Mapping[str, Any]) -> MailingList:
    values = _check_list_fields(data, partial=False)
    if session.scalar(select(MailingList.id).where(MailingList.name == values["name"])) is not None:
        raise Conflict(
            f"a list named {values['name']!r} already exists", code="list_exists", field="name"
        )
    mailing_list = MailingList(**values)
    session.add(mailing_list)
    session.flush()
    return mailing_list


def get_or_create_list(session: Session, name: str) -> MailingList:
    found = session.scalar(select(MailingList).where(MailingList.name == name.strip()))
    return found if found is not None else create_list(session, {"name": name})


def update_list(session: Session, list_id: int, data: Mapping[str, Any]) -> MailingList:
    mailing_list = get_list(session, list_id)
    values = _check_list_fields(data, partial=True)
    if "name" in values and values["name"] != mailing_list.name:
        clash = session.scalar(select(MailingList.id).where(MailingList.name == values["name"]))
        if clash is not None:
            raise Conflict(
                f"a list named {values['name']!r} already exists", code="list_exists", field="name"
            )
    for key, value in values.items():
        setattr(mailing_list, key, value)
    session.flush()
    return mailing_list


def get_list(session: Session, list_id: int) -> MailingList:
    found = session.get(MailingList, list_id)
    if found is None:
        raise NotFound(f"list {list_id} does not exist in this workspace")
    return found


def find_list_by_name(session: Session, name: str) -> MailingList | None:
    return session.scalar(select(MailingList).where(MailingList.name == name.strip()))


def delete_list(session: Session, list_id: int) -> None:
    session.delete(get_list(session, list_id))
    session.flush()


def search_lists(
    session: Session, *, q: str | None = None, cursor: str | None = None, limit: int = 50
) -> Page[MailingList]:
    stmt = select(MailingList)
    if q:
        stmt = stmt.where(MailingList.name.icontains(q, autoescape=True))
    return keyset_page(session, stmt, MailingList.id, cursor, limit)


def list_counts(session: Session, list_id: int) -> dict[str, int]:
    rows = session.execute(
        select(ListMembership.status, func.count())
        .where(ListMembership.list_id == list_id)
        .group_by(ListMembership.status)
    )
    counts = dict.fromkeys(MEMBERSHIP_STATUSES, 0)
    counts.update({str(status): int(count) for status, count in rows})
    return counts


def subscribe(
    session: Session,
    list_id: int,
    contact_id: int,
    consent: ConsentInput,
    *,
    confirmed: bool = False,
) -> ListMembership:
    """Subscribe (or re-subscribe) with a fresh consent record.

    ``confirmed`` marks consent already confirmed (e.g. an import of people who opted in
    elsewhere); on a double-opt-in list anything else waits as ``pending``. An import never
    re-subscribes someone who unsubscribed from the list: that needs their own act.
    """
    subscribe_many(session, list_id, [contact_id], consent, confirmed=confirmed)
    return get_membership(session, list_id, contact_id)


def subscribe_many(
    session: Session,
    list_id: int,
    contact_ids: Sequence[int],
    consent: ConsentInput,
    *,
    confirmed: bool = False,
) -> dict[int, str]:
    """``subscribe`` for many contacts in a few statements (bulk API, imports).

    Returns each distinct contact's membership status afterwards. Nothing is written if a
    contact is missing. New rows go in as bulk inserts (only consent ids are read back),
    which keeps a five-thousand-row call to a handful of statements on either backend.
    """
    if consent.source not in CONSENT_SOURCES:
        raise ValidationFailed(
            f"consent source must be one of {', '.join(CONSENT_SOURCES)}",
            code="invalid_source",
            field="source",
        )
    mailing_list = get_list(session, list_id)
    wanted = list(dict.fromkeys(contact_ids))
    found = set(session.scalars(select(Contact.id).where(Contact.id.in_(wanted))))
    missing = [contact_id for contact_id in wanted if contact_id not in found]
    if missing:
        raise NotFound(f"contact {missing[0]} does not exist in this workspace")
    current = {
        m.contact_id: m
        for m in session.scalars(
            select(ListMembership).where(
                ListMembership.list_id == list_id, ListMembership.contact_id.in_(wanted)
            )
        )
    }
    outcome = {contact_id: m.status for contact_id, m in current.items()}

    def keeps(membership: ListMembership | None) -> bool:
        if membership is None:
            return False
        return membership.status == "subscribed" or (
            membership.status == "unsubscribed" and consent.source == "import"
        )

    todo = [contact_id for contact_id in wanted if not keeps(current.get(contact_id))]
    if not todo:
        return outcome
    workspace_id = workspace_of(session)
    now = utcnow()
    status = "pending" if mailing_list.double_opt_in and not confirmed else "subscribed"
    consent_ids = session.scalars(
        insert(Consent).returning(Consent.id, sort_by_parameter_order=True),
        [
            {
                "workspace_id": workspace_id,
                "contact_id": contact_id,
                "list_id": list_id,
                "source": consent.source,
                "ip": consent.ip,
                "consent_text": consent.text,
                "recorded_at": now,
                "confirmed_at": now if (mailing_list.double_opt_in and confirmed) else None,
            }
            for contact_id in todo
        ],
    ).all()
    new_rows = []
    for contact_id, consent_id in zip(todo, consent_ids, strict=True):
        outcome[contact_id] = status
        membership = current.get(contact_id)
        if membership is None:
            new_rows.append(
                {
                    "workspace_id": workspace_id,
                    "list_id": list_id,
                    "contact_id": contact_id,
                    "status": status,
                    "consent_id": consent_id,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        else:
            membership.status, membership.consent_id, membership.updated_at = (
                status,
                consent_id,
                now,
            )
    if new_rows:
        session.execute(insert(ListMembership), new_rows)
    kind = "subscribed" if status == "subscribed" else "pending"
    changes = {"list_id": list_id, "list": mailing_list.name}
    session.execute(
        insert(ContactChange),
        [
            {
                "workspace_id": workspace_id,
                "contact_id": contact_id,
                "kind": kind,
                "source": consent.source,
                "changes": changes,
                "at": now,
            }
            for contact_id in todo
        ],
    )
    session.flush()
    segment_changes.note(session, todo, [segment_changes.LIST])
    return outcome


def confirm(session: Session, list_id: int, contact_id: int) -> ListMembership:
    """The double-opt-in click: pending becomes subscribed and the consent is stamped."""
    membership = get_membership(session, list_id, contact_id)
    if membership.status != "pending":
        return membership
    now = utcnow()
    if membership.consent_id is not None:
        record = session.get(Consent, membership.consent_id)
        if record is not None:
            record.confirmed_at = now
    membership.status, membership.updated_at = "subscribed", now
    session.add(
        ContactChange(
            contact_id=contact_id,
            kind="confirmed",
            source="form",
            changes={"list_id": list_id},
            at=now,
        )
    )
    session.flush()
    segment_changes.note(session, [contact_id], [segment_changes.LIST])
    return membership


def unsubscribe(session: Session, list_id: int, contact_id: int, *, source: str) -> ListMembership:
    membership = get_membership(session, list_id, contact_id)
    if membership.status != "unsubscribed":
        now = utcnow()
        membership.status, membership.updated_at = "unsubscribed", now
        session.add(
            ContactChange(
                contact_id=contact_id,
                kind="unsubscribed",
                source=source,
                changes={"list_id": list_id},
                at=now,
            )
        )
        session.flush()
        segment_changes.note(session, [contact_id], [segment_changes.LIST])
    return membership


def remove_member(session: Session, list_id: int, contact_id: int) -> None:
    """Drop the membership row (an admin correction); consent history stays."""
    session.delete(get_membership(session, list_id, contact_id))
    session.flush()
    segment_changes.note(session, [contact_id], [segment_changes.LIST])


def get_membership(session: Session, list_id: int, contact_id: int) -> ListMembership:
    membership = session.get(ListMembership, (list_id, contact_id))
    if membership is None:
        raise NotFound(f"contact {contact_id} is not on list {list_id}")
    return membership


def list_members(
    session: Session,
    list_id: int,
    *,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[ListMembership]:
    get_list(session, list_id)
    stmt = select(ListMembership).where(ListMembership.list_id == list_id)
    if status:
        stmt = stmt.where(ListMembership.status == status)
    return keyset_page(session, stmt, ListMembership.contact_id, cursor, limit)
