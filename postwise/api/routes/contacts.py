"""``/api/contacts``: search, single writes, the bulk upsert and each contact's timeline.

Every write goes through ``contacts.actions``; the bulk upsert is one call of
``upsert_contacts`` (plus one ``subscribe_many`` when a list is named), so a thousand
rows cost a few statements, not a few thousand.

Conventions (keys, pages, errors): docs/api.md.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Annotated, cast

from fastapi import APIRouter, Depends, Path, Query, Response, status
from sqlalchemy.orm import Session

from postwise.api.dependencies import get_settings, scoped_session
from postwise.api.schemas import (
    COMMON_PROBLEMS,
    MAX_ID,
    Cursor,
    FieldErrorOut,
    Limit,
    ObjectId,
    problem_responses,
)
from postwise.api.schemas.contacts import (
    BulkCounts,
    BulkRowOut,
    BulkStatus,
    BulkUpsertIn,
    BulkUpsertOut,
    ContactDetail,
    ContactIn,
    ContactOut,
    ContactPage,
    ContactPatch,
    ContactStatus,
    Timeline,
)
from postwise.contacts import actions, documents, lists
from postwise.core.errors import PayloadTooLarge
from postwise.core.settings import Settings
from postwise.storage.tables import Contact
from postwise.workspaces.scopes import Scope

router = APIRouter(prefix="/api/contacts", tags=["contacts"], responses=COMMON_PROBLEMS)

# scope="function": the transaction commits before the response is sent, so a client
# never reads back a 2xx whose write was then lost.
Reader = Annotated[Session, Depends(scoped_session(Scope.CONTACTS_READ), scope="function")]
Writer = Annotated[Session, Depends(scoped_session(Scope.CONTACTS_WRITE), scope="function")]
SOURCE = "api"


@router.get("", response_model=ContactPage, summary="Search contacts")
def search_contacts(
    session: Reader,
    q: Annotated[
        str | None,
        Query(max_length=200, description="Part of the email, first or last name."),
    ] = None,
    status: ContactStatus | None = None,
    company_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    list_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Contacts on this list, any status.")
    ] = None,
    email_domain: Annotated[str | None, Query(max_length=255)] = None,
    updated_since: Annotated[
        datetime | None, Query(description="ISO 8601; without a zone it is UTC.")
    ] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> ContactPage:
    page = actions.search_contacts(
        session,
        q=q,
        status=status,
        company_id=company_id,
        list_id=list_id,
        email_domain=email_domain,
        updated_since=updated_since,
        cursor=cursor,
        limit=limit,
    )
    return ContactPage(
        data=[ContactOut.model_validate(c) for c in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "",
    response_model=ContactOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a contact",
    responses=problem_responses(400, 409, 413),
)
def create_contact(session: Writer, body: ContactIn) -> Contact:
    return actions.create_contact(session, body.model_dump(exclude_unset=True), source=SOURCE)


@router.put(
    "",
    response_model=ContactOut,
    summary="Create or update a contact by email",
    description="201 when the contact was created, 200 otherwise. Only the fields sent "
    "change; attributes are merged.",
    responses={**problem_responses(400, 413), 201: {"model": ContactOut, "description": "Created"}},
)
def upsert_contact(session: Writer, body: ContactIn, response: Response) -> Contact:
    contact, outcome = actions.upsert_contact(
        session, body.model_dump(exclude_unset=True), source=SOURCE
    )
    response.status_code = status.HTTP_201_CREATED if outcome == "created" else status.HTTP_200_OK
    return contact


@router.post(
    "/bulk",
    response_model=BulkUpsertOut,
    summary="Create or update many contacts at once",
    description="Each row is applied whole or rejected whole with its reasons; a row that "
    "changes nothing writes nothing, so repeating a call is harmless.",
    responses=problem_responses(404, 413),
)
def bulk_upsert(
    session: Writer,
    body: BulkUpsertIn,
    settings: Annotated[Settings, Depends(get_settings)],
) -> BulkUpsertOut:
    if len(body.contacts) > settings.bulk_upsert_max:
        raise PayloadTooLarge(
            f"{len(body.contacts)} contacts in one call; send at most "
            f"{settings.bulk_upsert_max} per call",
            code="too_many_contacts",
            field="contacts",
        )
    target = _resolve_list(session, body.list_)
    results = actions.upsert_contacts(session, body.contacts, source=SOURCE)
    if target is not None:
        stored = [r.contact_id for r in results if r.status != "rejected" and r.contact_id]
        if stored:
            lists.subscribe_many(session, target, stored, lists.ConsentInput(source=SOURCE))
    rows = [
        BulkRowOut(
            index=r.index,
            status=cast(BulkStatus, r.status),
            id=r.contact_id,
            errors=[FieldErrorOut(**e.as_dict()) for e in r.errors],
        )
        for r in results
    ]
    counts = BulkCounts(**Counter(r.status for r in results))
    return BulkUpsertOut(results=rows, counts=counts, list_id=target)


def _resolve_list(session: Session, ref: int | str | None) -> int | None:
    """A list id must exist (checked before any row is written); a name is created."""
    if ref is None:
        return None
    if isinstance(ref, int):
        return lists.get_list(session, ref).id
    return lists.get_or_create_list(session, ref).id


@router.get(
    "/by-email/{email:path}",
    response_model=ContactDetail,
    summary="A contact by email, with company, lists and latest events",
    responses=problem_responses(400, 404),
)
def get_contact_by_email(
    session: Reader, email: Annotated[str, Path(max_length=320)]
) -> ContactDetail:
    contact = actions.get_contact_by_email(session, email)
    return ContactDetail.model_validate(documents.contact_document(session, contact))


@router.get(
    "/{contact_id}",
    response_model=ContactDetail,
    summary="A contact with company, lists and latest events",
    responses=problem_responses(404),
)
def get_contact(session: Reader, contact_id: ObjectId) -> ContactDetail:
    contact = actions.get_contact(session, contact_id)
    return ContactDetail.model_validate(documents.contact_document(session, contact))


@router.patch(
    "/{contact_id}",
    response_model=ContactOut,
    summary="Change some fields of a contact",
    responses=problem_responses(400, 404, 409, 413),
)
def update_contact(session: Writer, contact_id: ObjectId, body: ContactPatch) -> Contact:
    data = body.model_dump(exclude_unset=True)
    unset = data.pop("unset_attributes", None) or []
    contact = actions.update_contact(session, contact_id, data, source=SOURCE)
    if unset:
        contact = actions.unset_attributes(session, contact_id, unset, source=SOURCE)
    return contact


@router.delete(
    "/{contact_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a contact and its memberships",
    description="For a GDPR erasure that leaves only a keyed hash, use the privacy API.",
    responses=problem_responses(404),
)
def delete_contact(session: Writer, contact_id: ObjectId) -> None:
    actions.delete_contact(session, contact_id)


@router.get(
    "/{contact_id}/timeline",
    response_model=Timeline,
    summary="Changes and events of a contact, newest first",
    responses=problem_responses(404),
)
def timeline(
    session: Reader,
    contact_id: ObjectId,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Timeline:
    contact = actions.get_contact(session, contact_id)
    return Timeline.model_validate({"data": documents.timeline(session, contact.id, limit)})
