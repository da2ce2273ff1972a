"""``/api/lists``: static lists and their members; every subscription records consent.

Conventions (keys, pages, errors): docs/api.md.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from sqlalchemy.orm import Session

from postwise.api.dependencies import scoped_session
from postwise.api.schemas import COMMON_PROBLEMS, Cursor, Limit, ObjectId, problem_responses
from postwise.api.schemas.lists import (
    AddMemberIn,
    ListDetail,
    ListIn,
    ListOut,
    ListPage,
    ListPatch,
    MembershipCounts,
    MembershipOut,
    MembershipPage,
    MembershipStatus,
    SubscribeIn,
)
from postwise.contacts import actions, lists
from postwise.storage.tables import ListMembership, MailingList
from postwise.workspaces.scopes import Scope

router = APIRouter(prefix="/api/lists", tags=["lists"], responses=COMMON_PROBLEMS)

# scope="function": commit before the response is sent (see routes/contacts.py).
Reader = Annotated[Session, Depends(scoped_session(Scope.LISTS_READ), scope="function")]
Writer = Annotated[Session, Depends(scoped_session(Scope.LISTS_WRITE), scope="function")]


def _detail(session: Session, mailing_list: MailingList) -> ListDetail:
    return ListDetail.model_validate(
        {
            **ListOut.model_validate(mailing_list).model_dump(),
            "counts": MembershipCounts.model_validate(lists.list_counts(session, mailing_list.id)),
        }
    )


def _consent(body: SubscribeIn) -> lists.ConsentInput:
    return lists.ConsentInput(
        source=body.source,
        ip=str(body.ip) if body.ip is not None else None,
        text=body.consent_text,
    )


@router.get("", response_model=ListPage, summary="Search lists")
def search_lists(
    session: Reader,
    q: Annotated[str | None, Query(max_length=200, description="Part of the name.")] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> ListPage:
    page = lists.search_lists(session, q=q, cursor=cursor, limit=limit)
    return ListPage(
        data=[ListOut.model_validate(m) for m in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "",
    response_model=ListDetail,
    status_code=status.HTTP_201_CREATED,
    summary="Create a list",
    responses=problem_responses(400, 409, 413),
)
def create_list(session: Writer, body: ListIn) -> ListDetail:
    return _detail(session, lists.create_list(session, body.model_dump(exclude_unset=True)))


@router.get(
    "/{list_id}",
    response_model=ListDetail,
    summary="A list with its member counts",
    responses=problem_responses(404),
)
def get_list(session: Reader, list_id: ObjectId) -> ListDetail:
    return _detail(session, lists.get_list(session, list_id))


@router.patch(
    "/{list_id}",
    response_model=ListDetail,
    summary="Rename a list or change its settings",
    responses=problem_responses(400, 404, 409, 413),
)
def update_list(session: Writer, list_id: ObjectId, body: ListPatch) -> ListDetail:
    mailing_list = lists.update_list(session, list_id, body.model_dump(exclude_unset=True))
    return _detail(session, mailing_list)


@router.delete(
    "/{list_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a list and its memberships",
    description="Consent records stay with the contacts, without the list.",
    responses=problem_responses(404),
)
def delete_list(session: Writer, list_id: ObjectId) -> None:
    lists.delete_list(session, list_id)


@router.get(
    "/{list_id}/members",
    response_model=MembershipPage,
    summary="Members of a list",
    responses=problem_responses(404),
)
def list_members(
    session: Reader,
    list_id: ObjectId,
    status: MembershipStatus | None = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> MembershipPage:
    page = lists.list_members(session, list_id, status=status, cursor=cursor, limit=limit)
    return MembershipPage(
        data=[MembershipOut.model_validate(m) for m in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "/{list_id}/members",
    response_model=MembershipOut,
    summary="Subscribe an existing contact, named by id or email",
    description="Subscribing someone already subscribed changes nothing.",
    responses=problem_responses(400, 404, 413),
)
def add_member(session: Writer, list_id: ObjectId, body: AddMemberIn) -> ListMembership:
    contact_id = body.contact_id
    if contact_id is None:
        contact_id = actions.get_contact_by_email(session, body.email or "").id
    return lists.subscribe(session, list_id, contact_id, _consent(body), confirmed=body.confirmed)


@router.get(
    "/{list_id}/members/{contact_id}",
    response_model=MembershipOut,
    summary="One membership",
    responses=problem_responses(404),
)
def get_member(session: Reader, list_id: ObjectId, contact_id: ObjectId) -> ListMembership:
    return lists.get_membership(session, list_id, contact_id)


@router.put(
    "/{list_id}/members/{contact_id}",
    response_model=MembershipOut,
    summary="Subscribe a contact, recording consent",
    description="On a double-opt-in list the member stays pending until confirmed, unless "
    "`confirmed` says consent was confirmed elsewhere.",
    responses=problem_responses(400, 404, 413),
)
def subscribe(
    session: Writer, list_id: ObjectId, contact_id: ObjectId, body: SubscribeIn
) -> ListMembership:
    return lists.subscribe(session, list_id, contact_id, _consent(body), confirmed=body.confirmed)


@router.delete(
    "/{list_id}/members/{contact_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Remove a membership (an admin correction; consent history stays)",
    description="To record that the person left the list, unsubscribe instead.",
    responses=problem_responses(404),
)
def remove_member(session: Writer, list_id: ObjectId, contact_id: ObjectId) -> None:
    lists.remove_member(session, list_id, contact_id)


@router.post(
    "/{list_id}/members/{contact_id}/confirm",
    response_model=MembershipOut,
    summary="Confirm a pending (double-opt-in) membership",
    responses=problem_responses(404),
)
def confirm(session: Writer, list_id: ObjectId, contact_id: ObjectId) -> ListMembership:
    return lists.confirm(session, list_id, contact_id)


@router.post(
    "/{list_id}/members/{contact_id}/unsubscribe",
    response_model=MembershipOut,
    summary="Unsubscribe a member; an import will not subscribe them again",
    responses=problem_responses(404),
)
def unsubscribe(session: Writer, list_id: ObjectId, contact_id: ObjectId) -> ListMembership:
    return lists.unsubscribe(session, list_id, contact_id, source="api")
