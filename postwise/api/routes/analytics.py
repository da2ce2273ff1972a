"""``/api/analytics``: campaign and segment reports read from the rollups (docs/analytics.md).

Nothing here scans raw events; figures are as fresh as the last ``analytics.rollup`` run.
Reading needs ``segments:read``, like the campaigns they describe.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse
from sqlalchemy.orm import Session

from postwise.analytics import report
from postwise.api.dependencies import scoped_session
from postwise.api.schemas import COMMON_PROBLEMS
from postwise.campaigns import store
from postwise.workspaces.scopes import Scope

router = APIRouter(tags=["analytics"], responses=COMMON_PROBLEMS)
PREFIX = "/api/analytics"

Reader = Annotated[Session, Depends(scoped_session(Scope.SEGMENTS_READ), scope="function")]
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
