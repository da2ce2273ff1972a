"""``/api/analytics``: campaign and segment reports read from the rollups (docs/analytics.md).

Nothing here scans raw events; figures are as fresh as the last ``analytics.rollup`` run
(the uplift: the last ``analytics.uplift`` run). Reading needs ``segments:read``, like the
campaigns they describe; queueing an uplift computation ``segments:write``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import PlainTextResponse
from sqlalchemy.orm import Session

from postwise.analytics import jobs, report, uplift
from postwise.api.dependencies import scoped_session
from postwise.api.schemas import COMMON_PROBLEMS
from postwise.campaigns import store
from postwise.workspaces.scopes import Scope

router = APIRouter(tags=["analytics"], responses=COMMON_PROBLEMS)
PREFIX = "/api/analytics"

Reader = Annotated[Session, Depends(scoped_session(Scope.SEGMENTS_READ), scope="function")]
Refresher = Annotated[Session, Depends(scoped_session(Scope.SEGMENTS_WRITE), scope="function")]
Dimension = Literal["variant", "domain", "company", "segment", "list"]


@router.get(PREFIX + "/campaigns/{campaign_id}", summary="A campaign's totals, rates, breakdowns")
def campaign(session: Reader, campaign_id: int) -> dict[str, Any]:
    return report.campaign_report(session, campaign_id).as_dict()


@router.get(PREFIX + "/campaigns/{campaign_id}/breakdown", summary="Per variant/domain/...")
def breakdown(session: Reader, campaign_id: int, dimension: Dimension = "domain") -> dict[str, Any]:
    key = store.get_campaign(session, campaign_id).key
    rows = report.breakdown(session, key, dimension)
    return {"dimension": dimension, "data": [r.__dict__ for r in rows]}


@router.get(PREFIX + "/campaigns/{campaign_id}/series", summary="Hourly or daily counters")
def series(
    session: Reader, campaign_id: int, interval: Literal["hour", "day"] = "hour"
) -> dict[str, Any]:
    key = store.get_campaign(session, campaign_id).key
    return {"interval": interval, "data": report.series(session, key, interval=interval)}


@router.get(
    PREFIX + "/campaigns/{campaign_id}/export.csv",
    summary="A breakdown as CSV",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
def export_csv(
    session: Reader, campaign_id: int, dimension: Dimension = "domain"
) -> PlainTextResponse:
    key = store.get_campaign(session, campaign_id).key
    body = report.to_csv(report.breakdown(session, key, dimension))
    return PlainTextResponse(body, media_type="text/csv")


@router.get(PREFIX + "/segments/{segment_id}", summary="A segment's campaign totals, engagement")
def segment(session: Reader, segment_id: int) -> dict[str, Any]:
    return report.segment_report(session, segment_id)


@router.get(PREFIX + "/lists/{list_id}", summary="A list's campaign totals and hygiene rates")
def mailing_list(session: Reader, list_id: int) -> dict[str, Any]:
    return report.list_report(session, list_id)


@router.get(PREFIX + "/hygiene", summary="Bounce, unsubscribe, complaint, conversion rates")
def hygiene(session: Reader, kind: Literal["segment", "list"] = "segment") -> dict[str, Any]:
    return {"kind": kind, "data": report.hygiene(session, kind)}


@router.get(PREFIX + "/uplift", summary="CLTV uplift of segment-reached contacts (stored)")
def uplift_result(
    session: Reader,
    event: str = uplift.DEFAULT_EVENT,
    revenue_property: str = uplift.DEFAULT_PROPERTY,
    window_days: Annotated[
        int, Query(ge=1, le=uplift.MAX_WINDOW_DAYS)
    ] = uplift.DEFAULT_WINDOW_DAYS,
) -> dict[str, Any]:
    return uplift.stored(session, uplift.Params(event, revenue_property, window_days))


@router.post(
    PREFIX + "/uplift",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Recompute the CLTV uplift in the background",
)
def uplift_refresh(
    session: Refresher,
    event: str = uplift.DEFAULT_EVENT,
    revenue_property: str = uplift.DEFAULT_PROPERTY,
    window_days: Annotated[
        int, Query(ge=1, le=uplift.MAX_WINDOW_DAYS)
    ] = uplift.DEFAULT_WINDOW_DAYS,
) -> dict[str, Any]:
    params = uplift.Params(event, revenue_property, window_days).check()
    job_id = jobs.queue_uplift(session, vars(params))
    return {"job_id": job_id, "status": "queued"}
