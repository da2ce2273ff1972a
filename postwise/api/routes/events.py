"""Reading events: a contact's events (``/api/contacts/{id}/events``) and the workspace's
event catalogue (``/api/events/catalog``) for segment and workflow builders.

Both need ``contacts:read``; the queries are in ``tracking/queries.py``.
See docs/tracking-web.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from postwise.api.dependencies import scoped_session
from postwise.api.schemas import COMMON_PROBLEMS, Cursor, Limit, ObjectId, problem_responses
from postwise.api.schemas.events import Catalog, EventPage
from postwise.tracking import queries
from postwise.workspaces.scopes import Scope

router = APIRouter(prefix="/api", tags=["events"], responses=COMMON_PROBLEMS)

Reader = Annotated[Session, Depends(scoped_session(Scope.CONTACTS_READ), scope="function")]


@router.get(
    "/contacts/{contact_id}/events",
    response_model=EventPage,
    summary="A contact's events, newest first",
    responses=problem_responses(400, 404),
)
def contact_events(
    session: Reader,
    contact_id: ObjectId,
    name: Annotated[
        list[str] | None, Query(max_length=20, description="Only these event names (repeat).")
    ] = None,
    event_type: Annotated[
        list[str] | None,
        Query(alias="type", max_length=10, description="Only these types: track, page, ..."),
    ] = None,
    since: Annotated[
        datetime | None, Query(description="From this time, inclusive (ISO 8601; UTC if no zone).")
    ] = None,
    until: Annotated[datetime | None, Query(description="Before this time, exclusive.")] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> EventPage:
    page = queries.contact_events(
        session,
        contact_id,
        names=name or (),
        types=event_type or (),
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
    return EventPage.model_validate({"data": page.items, "next_cursor": page.next_cursor})


@router.get(
    "/events/catalog",
    response_model=Catalog,
    summary="Event names with counts, first and last seen, and property keys",
    responses=problem_responses(400),
)
def event_catalog(
    session: Reader,
    sample: Annotated[
        int,
        Query(
            ge=1,
            le=queries.MAX_SAMPLE,
            description="Recent events per name whose property keys are listed.",
        ),
    ] = queries.DEFAULT_SAMPLE,
) -> Catalog:
    return Catalog.model_validate({"data": queries.event_catalog(session, sample=sample)})
