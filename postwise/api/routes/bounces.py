"""Bounces and complaints: records, per-domain summaries, domain blocks, alerts, intake.

``/api/bounces...`` needs a key with the ``send`` scope and sees its own workspace only.
``POST /api/bounces/raw`` takes one raw message (a DSN, an ARF report...) as the request
body, for senders whose bounces land somewhere Postwise cannot read; it can only tie
bounces to this workspace's messages. ``/webhooks/ses/{token}`` and
``/webhooks/sendgrid/{token}`` are the providers' endpoints: the signed token in the URL
names the workspace (``GET /api/bounces/webhooks`` shows the URLs), and SNS and SendGrid
signatures are checked on top. Lifting a suppression is ``DELETE /api/suppressions/{id}``
(audited). See docs/bounces.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, status
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from postwise.api.dependencies import get_db, get_settings, require, tenant_session
from postwise.bounces import filterblock, intake, policy, records, webhooks
from postwise.core.pagination import MAX_LIMIT
from postwise.core.settings import Settings
from postwise.storage.database import Database
from postwise.storage.tables import BounceAlert, BounceRecord, DomainBlock
from postwise.tracking.tokens import TokenSigner
from postwise.workspaces.actions import Principal
from postwise.workspaces.scopes import Scope

router = APIRouter(tags=["bounces"])
webhook_router = APIRouter(tags=["bounce webhooks"])

MAX_ID = 2**63 - 1
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
Token = Annotated[str, Path(min_length=8, max_length=200)]
_principal = require(Scope.SEND)
Caller = Annotated[Principal, Depends(_principal)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


def _session(caller: Caller, db: Annotated[Database, Depends(get_db)]) -> Iterator[Session]:
    yield from tenant_session(caller, db)


Tenant = Annotated[Session, Depends(_session, scope="function")]
Db = Annotated[Database, Depends(get_db)]
AppSettings = Annotated[Settings, Depends(get_settings)]


def _context(settings: AppSettings, db: Db) -> intake.Context:
    return intake.Context.from_settings(settings, db)


def sns_fetcher() -> webhooks.Fetch:
    """How SNS certificates and subscription URLs are fetched (tests override this)."""
    return webhooks.fetch_https


Ctx = Annotated[intake.Context, Depends(_context)]


class RecordOut(BaseModel):
    id: int
    kind: str
    email: str
    domain: str
    contact_id: int | None
    outbox_id: int | None
    campaign_key: str | None
    source: str
    reason: str
    hard: bool
    status: str | None
    reply_code: int | None
    diagnostic: str | None
    feedback_type: str | None
    filter_wording: bool
    verdict: str = Field(description=f"One of {', '.join(policy.VERDICTS)}.")
    evidence: dict[str, Any]
    occurred_at: datetime

    @classmethod
    def of(cls, row: BounceRecord) -> RecordOut:
        return cls(
            id=row.id,
            kind=row.kind,
            email=row.email,
            domain=row.domain,
            contact_id=row.contact_id,
            outbox_id=row.outbox_id,
            campaign_key=row.campaign_key,
            source=row.source,
            reason=row.reason,
            hard=row.hard,
            status=row.status,
            reply_code=row.reply_code,
            diagnostic=row.diagnostic,
            feedback_type=row.feedback_type,
            filter_wording=row.filter_wording,
            verdict=row.verdict,
            evidence=dict(row.evidence),
            occurred_at=row.occurred_at,
        )


class RecordPage(BaseModel):
    data: list[RecordOut]
    next_cursor: str | None


class SummaryOut(BaseModel):
    domain: str
    bounces: int
    hard: int
    soft: int
    complaints: int
    suppressed: int
    kept_filter_block: int
    last_at: datetime
    blocked: bool = Field(description="The domain is marked as filtering our mail.")


class BlockOut(BaseModel):
    id: int
    domain: str
    status: str
    since: datetime
    last_seen_at: datetime
    campaign_key: str | None
    per_minute: float | None
    slow_until: datetime | None
    cleared_at: datetime | None
    evidence: dict[str, Any]

    @classmethod
    def of(cls, row: DomainBlock) -> BlockOut:
        return cls(
            id=row.id,
            domain=row.domain,
            status=row.status,
            since=row.since,
            last_seen_at=row.last_seen_at,
            campaign_key=row.campaign_key,
            per_minute=row.per_minute,
            slow_until=row.slow_until,
            cleared_at=row.cleared_at,
            evidence=dict(row.evidence),
        )


class BlockPage(BaseModel):
    data: list[BlockOut]
    next_cursor: str | None


class AlertOut(BaseModel):
    id: int
    kind: str
    domain: str | None
    campaign_key: str | None
    message: str
    evidence: dict[str, Any]
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None

    @classmethod
    def of(cls, row: BounceAlert) -> AlertOut:
        return cls(
            id=row.id,
            kind=row.kind,
            domain=row.domain,
            campaign_key=row.campaign_key,
            message=row.message,
            evidence=dict(row.evidence),
            created_at=row.created_at,
            acknowledged_at=row.acknowledged_at,
            acknowledged_by=row.acknowledged_by,
        )


class AlertPage(BaseModel):
    data: list[AlertOut]
    next_cursor: str | None


class IntakeOut(BaseModel):
    inbound_id: int | None
    kind: str = Field(description="bounce, complaint, autoreply, delivered, not_bounce, unparsed")
    outbox_id: int | None = Field(description="The message it was tied to, if any.")
    record_ids: list[int]
    verdicts: list[str]
    duplicate: bool
    unparsed_reason: str | None


class WebhooksOut(BaseModel):
    ses: str = Field(description="Subscribe this HTTPS URL to the SES bounce/complaint topic.")
    sendgrid: str = Field(description="SendGrid Event Webhook URL (bounce, dropped, spamreport).")


def _caller_name(caller: Principal) -> str:
    return f"api_key:{caller.key_id}"


@router.get("/api/bounces", response_model=RecordPage, summary="List bounce and complaint records")
def list_records(
    session: Tenant,
    campaign_key: Annotated[str | None, Query(max_length=200)] = None,
    domain: Annotated[str | None, Query(max_length=255)] = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
    reason: Annotated[str | None, Query(max_length=32)] = None,
    kind: Annotated[str | None, Query(max_length=16)] = None,
    verdict: Annotated[str | None, Query(max_length=32)] = None,
    hard: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    limit: Limit = 50,
) -> RecordPage:
    page = records.list_records(
        session,
        records.RecordFilter(
            campaign_key, domain, email, reason, kind, verdict, hard, since, until
        ),
        cursor=cursor,
        limit=limit,
    )
    return RecordPage(data=[RecordOut.of(r) for r in page.items], next_cursor=page.next_cursor)


@router.get(
    "/api/bounces/summary",
    response_model=list[SummaryOut],
    summary="Bounces and complaints per recipient domain",
)
def summary(
    session: Tenant,
    since: datetime | None = None,
    until: datetime | None = None,
    campaign_key: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[SummaryOut]:
    rows = records.summary_by_domain(
        session, since=since, until=until, campaign_key=campaign_key, limit=limit
    )
    return [SummaryOut.model_validate(vars(r)) for r in rows]


@router.get(
    "/api/bounces/domain-blocks",
    response_model=BlockPage,
    summary="Domains suspected of filtering our mail as unknown users",
)
def list_blocks(
    session: Tenant,
    status: Annotated[str | None, Query(max_length=16)] = None,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    limit: Limit = 50,
) -> BlockPage:
    page = records.list_blocks(session, status=status, cursor=cursor, limit=limit)
    return BlockPage(data=[BlockOut.of(r) for r in page.items], next_cursor=page.next_cursor)


@router.post(
    "/api/bounces/domain-blocks/{block_id}/clear",
    response_model=BlockOut,
    summary="The block is solved: hard bounces at the domain suppress again, pace returns",
)
def clear_block(session: Tenant, caller: Caller, block_id: Id) -> BlockOut:
    return BlockOut.of(filterblock.clear_block(session, block_id, actor=_caller_name(caller)))


@router.get("/api/bounces/alerts", response_model=AlertPage, summary="Bounce alerts")
def list_alerts(
    session: Tenant,
    acknowledged: bool | None = None,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    limit: Limit = 50,
) -> AlertPage:
    page = records.list_alerts(session, acknowledged=acknowledged, cursor=cursor, limit=limit)
    return AlertPage(data=[AlertOut.of(r) for r in page.items], next_cursor=page.next_cursor)


@router.post(
    "/api/bounces/alerts/{alert_id}/acknowledge",
    response_model=AlertOut,
    summary="Mark an alert as seen",
)
def acknowledge_alert(session: Tenant, caller: Caller, alert_id: Id) -> AlertOut:
    return AlertOut.of(records.acknowledge_alert(session, alert_id, by=_caller_name(caller)))


@router.get(
    "/api/bounces/webhooks",
    response_model=WebhooksOut,
    summary="This workspace's SES and SendGrid webhook URLs",
)
def webhook_urls(caller: Caller, settings: AppSettings) -> WebhooksOut:
    signer = TokenSigner(settings.resolved_secret_key())
    token = webhooks.webhook_token(signer, caller.workspace_id)
    base = settings.base_url.rstrip("/")
    return WebhooksOut(
        ses=f"{base}/webhooks/ses/{token}", sendgrid=f"{base}/webhooks/sendgrid/{token}"
    )


@router.post(
    "/api/bounces/raw",
    response_model=IntakeOut,
    summary="Take one raw bounce or complaint message (the request body, as received)",
)
async def post_raw(request: Request, caller: Caller, ctx: Ctx) -> IntakeOut:
    raw = await request.body()
    result = await asyncio.to_thread(
        intake.ingest, ctx, raw, source="http", workspace_id=caller.workspace_id
    )
    return IntakeOut(
        inbound_id=result.inbound_id,
        kind=result.kind,
        outbox_id=result.outbox_id,
        record_ids=result.record_ids,
        verdicts=result.verdicts,
        duplicate=result.duplicate,
        unparsed_reason=result.unparsed_reason,
    )


class InboundOut(BaseModel):
    id: int
    source: str
    kind: str
    parsed: bool
    unparsed_reason: str | None
    subject: str | None
    addresses: list[str]
    raw_size: int = Field(description="Bytes received (the kept copy may be cut).")
    received_at: datetime


class InboundPage(BaseModel):
    data: list[InboundOut]
    next_cursor: str | None


@router.get(
    "/api/bounces/inbound",
    response_model=InboundPage,
    summary="Messages received for this workspace, parsed or kept unparsed with the reason",
)
def list_inbound(
    session: Tenant,
    kind: Annotated[str | None, Query(max_length=16)] = None,
    parsed: bool | None = None,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    limit: Limit = 50,
) -> InboundPage:
    page = records.list_inbound(session, kind=kind, parsed=parsed, cursor=cursor, limit=limit)
    return InboundPage(
        data=[
            InboundOut(
                id=m.id,
                source=m.source,
                kind=m.kind,
                parsed=m.parsed,
                unparsed_reason=m.unparsed_reason,
                subject=m.subject,
                addresses=list(m.addresses),
                raw_size=m.raw_size,
                received_at=m.received_at,
            )
            for m in page.items
        ],
        next_cursor=page.next_cursor,
    )


@router.get("/api/bounces/{record_id}", response_model=RecordOut, summary="One record")
def get_record(session: Tenant, record_id: Id) -> RecordOut:
    return RecordOut.of(records.get_record(session, record_id))


# --- providers' webhooks (token-addressed, no API key) ---------------------------------


class SnsOut(BaseModel):
    action: str = Field(description="confirmed, recorded, duplicate or ignored")
    record_ids: list[int] = Field(default_factory=list)


class SendgridOut(BaseModel):
    recorded: int
    duplicates: int
    ignored: int


@webhook_router.post(
    "/webhooks/ses/{token}",
    response_model=SnsOut,
    status_code=status.HTTP_200_OK,
    summary="Amazon SES bounce and complaint notifications through SNS",
)
async def ses_webhook(
    request: Request,
    token: Token,
    ctx: Ctx,
    fetch: Annotated[webhooks.Fetch, Depends(sns_fetcher)],
) -> SnsOut:
    workspace_id = webhooks.workspace_for(ctx, token)
    body = await request.body()
    outcome = await asyncio.to_thread(webhooks.handle_sns, ctx, workspace_id, body, fetch=fetch)
    ids = outcome.result.record_ids if outcome.result is not None else []
    return SnsOut(action=outcome.action, record_ids=ids)


@webhook_router.post(
    "/webhooks/sendgrid/{token}",
    response_model=SendgridOut,
    summary="SendGrid event webhook (bounce, dropped, spamreport)",
)
async def sendgrid_webhook(
    request: Request, token: Token, ctx: Ctx, settings: AppSettings
) -> SendgridOut:
    workspace_id = webhooks.workspace_for(ctx, token)
    key = (
        webhooks.load_sendgrid_key(settings.bounce_sendgrid_public_key)
        if settings.bounce_sendgrid_public_key
        else None
    )
    body = await request.body()
    outcome = await asyncio.to_thread(
        webhooks.handle_sendgrid,
        ctx,
        workspace_id,
        body,
        key=key,
        signature=request.headers.get(webhooks.SENDGRID_SIGNATURE),
        timestamp=request.headers.get(webhooks.SENDGRID_TIMESTAMP),
    )
    return SendgridOut(
        recorded=outcome.recorded, duplicates=outcome.duplicates, ignored=outcome.ignored
    )
