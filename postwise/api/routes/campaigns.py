"""``/api/campaigns``: campaign definitions, the audience estimate, the lifecycle moves
(schedule, pause, resume, cancel), test sends and A/B and attribution results.

Reading needs ``segments:read`` (a campaign shows its audience); anything that changes
or sends needs ``send``. Refused moves are 409 problems naming the state; see
docs/campaigns.md and docs/api.md.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, status
from sqlalchemy.orm import Session

from postwise.api.dependencies import scoped_session
from postwise.api.schemas import COMMON_PROBLEMS
from postwise.campaigns import attribution, audience, lifecycle, results, store
from postwise.core.errors import ValidationFailed
from postwise.workspaces.scopes import Scope

router = APIRouter(tags=["campaigns"], responses=COMMON_PROBLEMS)
PREFIX = "/api/campaigns"

Reader = Annotated[Session, Depends(scoped_session(Scope.SEGMENTS_READ), scope="function")]
Writer = Annotated[Session, Depends(scoped_session(Scope.SEND), scope="function")]
Doc = Annotated[dict[str, Any], Body()]


@router.get(PREFIX, summary="All campaigns")
def list_campaigns(session: Reader, status: str | None = None) -> dict[str, Any]:
    return {
        "data": [store.as_dict(session, c) for c in store.list_campaigns(session, status=status)]
    }


@router.post(PREFIX, status_code=status.HTTP_201_CREATED, summary="Create a campaign (draft)")
def create_campaign(session: Writer, body: Doc) -> dict[str, Any]:
    return store.as_dict(session, store.create_campaign(session, body))


@router.get(PREFIX + "/{campaign_id}", summary="One campaign")
def get_campaign(session: Reader, campaign_id: int) -> dict[str, Any]:
    return store.as_dict(session, store.get_campaign(session, campaign_id))


@router.patch(PREFIX + "/{campaign_id}", summary="Edit a draft or scheduled campaign")
def update_campaign(session: Writer, campaign_id: int, body: Doc) -> dict[str, Any]:
    return store.as_dict(session, store.update_campaign(session, campaign_id, body))


@router.get(PREFIX + "/{campaign_id}/estimate", summary="Audience size if it were sent now")
def estimate(session: Reader, campaign_id: int) -> dict[str, Any]:
    return audience.estimate(session, store.get_campaign(session, campaign_id))


@router.post(PREFIX + "/{campaign_id}/schedule", summary="Check and schedule (or send now)")
def schedule(session: Writer, campaign_id: int) -> dict[str, Any]:
    return store.as_dict(session, lifecycle.schedule(session, campaign_id))


@router.post(PREFIX + "/{campaign_id}/pause", summary="Pause: unsent messages are held")
def pause(session: Writer, campaign_id: int) -> dict[str, Any]:
    return store.as_dict(session, lifecycle.pause(session, campaign_id))


@router.post(PREFIX + "/{campaign_id}/resume", summary="Resume a paused campaign")
def resume(session: Writer, campaign_id: int) -> dict[str, Any]:
    return store.as_dict(session, lifecycle.resume(session, campaign_id))


@router.post(PREFIX + "/{campaign_id}/cancel", summary="Cancel: unsent messages never go")
def cancel(session: Writer, campaign_id: int) -> dict[str, Any]:
    return store.as_dict(session, lifecycle.cancel(session, campaign_id))


@router.post(PREFIX + "/{campaign_id}/test-send", summary="Send to chosen addresses now")
def test_send(session: Writer, campaign_id: int, body: Doc) -> dict[str, Any]:
    emails = body.get("emails")
    if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
        raise ValidationFailed("emails must be a list of addresses", field="emails")
    return {"outbox_ids": lifecycle.test_send(session, campaign_id, emails)}


@router.get(PREFIX + "/{campaign_id}/results", summary="A/B results and attributed conversions")
def campaign_results(session: Reader, campaign_id: int) -> dict[str, Any]:
    return {
        **results.current(session, campaign_id),
        "attribution": attribution.summary(session, campaign_id),
    }
