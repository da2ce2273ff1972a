"""Fan-out: the audience snapshot and its outbox rows, written set-based in batches.

One batch is a contact-id range (``fanout_cursor``, hi]: one ``INSERT ... SELECT`` into
``campaign_recipients`` (unique per campaign and contact: a re-run adds nobody twice)
and one ``INSERT ... SELECT`` from there into the outbox (unique idempotency key
``campaign:KEY:CONTACT``), then the cursor moves, all in the job's transaction. No row
goes through the ORM: at a million recipients that is the difference between seconds
and many minutes (benchmarks/campaign_fanout.py).

Outbox ids are chosen while the snapshot is written (``nextval`` of the outbox sequence
on PostgreSQL, max id + row number on SQLite's single writer), so the snapshot knows
each recipient's message without an update pass.

A/B: each contact's bucket ``abtest.bucket`` (a hash of contact and campaign, the same
in SQL and Python) puts it in the test share (split between variants by weight) or the
rest, which waits for the winner (``queue_rest``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    Integer,
    String,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from postwise.campaigns import abtest
from postwise.campaigns.audience import audience_select
from postwise.campaigns.store import variants_of
from postwise.core import clock
from postwise.delivery.compose import ROW_SENDER
from postwise.delivery.outbox import Status
from postwise.storage.tables import Campaign, CampaignRecipient, Contact, OutboxMessage
from postwise.storage.types import UTCDateTime


def cast_table(model: Any) -> Any:
    return model.__table__


def idempotency_prefix(campaign: Campaign) -> str:
    return f"campaign:{campaign.key}:"


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _plus_seconds(dialect: str, ts: Any, seconds: Any) -> ColumnElement[Any]:
    """``ts + seconds`` as SQL, for both backends (SQLite keeps datetimes as text)."""
    if dialect == "postgresql":
        return ts + func.make_interval(0, 0, 0, 0, 0, 0, cast(seconds, postgresql.DOUBLE_PRECISION))
    return func.strftime(
        "%Y-%m-%d %H:%M:%f", ts, func.printf("%+.3f seconds", cast(seconds, sqlite.FLOAT))
    )


def local_instants(
    session: Session, campaign: Campaign, now: datetime
) -> tuple[dict[str, datetime], datetime]:
    """For a local-time send: the UTC instant of the wall-clock time in each zone used by
    this workspace's contacts, and in the fallback zone. An instant already past sends now."""
    spec = campaign.schedule
    wall = datetime.fromisoformat(spec["at"])
    fallback = spec.get("fallback_timezone") or "UTC"

    def instant(zone: str) -> datetime | None:
        try:
            at = wall.replace(tzinfo=ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError):
            return None
        return max(at.astimezone(ZoneInfo("UTC")), now)

    zones: dict[str, datetime] = {}
    for zone in session.scalars(
        select(Contact.timezone)
        .where(Contact.workspace_id == campaign.workspace_id, Contact.timezone.is_not(None))
        .distinct()
    ):
        found = instant(zone) if zone else None
        if zone and found is not None:
            zones[zone] = found
    default = instant(fallback) or now
    return zones, default


def start_time(campaign: Campaign, now: datetime) -> datetime:
    if campaign.schedule.get("mode") == "at" and campaign.send_at is not None:
        return max(campaign.send_at, now)
    return now


def _scheduled_expr(
    session: Session, campaign: Campaign, timezone_col: Any, now: datetime
) -> ColumnElement[Any]:
    ts_type = UTCDateTime()
    if campaign.schedule.get("mode") != "local":
        return literal(start_time(campaign, now), ts_type)
    zones, default = local_instants(session, campaign, now)
    if not zones:
        return literal(default, ts_type)
    return case(
        *[(timezone_col == zone, literal(at, ts_type)) for zone, at in sorted(zones.items())],
        else_=literal(default, ts_type),
    )


def _upper_bound(session: Session, campaign: Campaign, batch: int) -> int | None:
    """The contact id ending the next batch, None when the rest fits in one."""
    return session.scalar(
        select(Contact.id)
        .where(Contact.workspace_id == campaign.workspace_id, Contact.id > campaign.fanout_cursor)
        .order_by(Contact.id)
        .offset(batch - 1)
        .limit(1)
    )


def snapshot_batch(session: Session, campaign: Campaign, batch: int) -> tuple[int, bool]:
    """Snapshot and queue the next batch; returns (recipients added, done)."""
    now = clock.utcnow()
    dialect = _dialect(session)
    lo = campaign.fanout_cursor
    hi = _upper_bound(session, campaign, batch)
    aud = audience_select(campaign, lo=lo, hi=hi)
    if aud is None:
        return 0, True
    a = aud.subquery()
    sources = campaign.audience["sources"]
    kinds = [next(iter(s)) for s in sources]
    ids = [next(iter(s.values())) for s in sources]
    source_kind: Any = (
        literal(kinds[0], String)
        if len(set(kinds)) == 1
        else case(*[(a.c.ord == i, literal(k)) for i, k in enumerate(kinds)])
    )
    source_id: Any = (
        literal(ids[0], BigInteger)
        if len(ids) == 1
        else case(*[(a.c.ord == i, literal(v, BigInteger)) for i, v in enumerate(ids)])
    )
    variants = variants_of(session, campaign.id)
    if variants and campaign.ab:
        bucket = abtest.bucket_sql(a.c.contact_id, campaign.id)
        cuts = abtest.cuts(campaign.ab["test_share"], [v.weight for v in variants])
        phase: Any = case((bucket < cuts[-1], literal("test")), else_=literal("rest"))
        variant: Any = case(
            *[(bucket < cut, literal(v.key)) for v, cut in zip(variants, cuts, strict=True)],
            else_=null(),
        )
    else:
        phase, variant = literal("all"), null()
    scheduled = _scheduled_expr(session, campaign, a.c.timezone, now)
    if campaign.pace_per_minute:
        seq = campaign.recipient_count + func.row_number().over(order_by=a.c.contact_id)
        scheduled = _plus_seconds(dialect, scheduled, seq * 60.0 / campaign.pace_per_minute)
    if dialect == "postgresql":
        next_id: Any = func.nextval(literal_column("pg_get_serial_sequence('outbox', 'id')"))
    else:
        next_id = select(func.coalesce(func.max(OutboxMessage.id), 0)).scalar_subquery() + (
            func.row_number().over(order_by=a.c.contact_id)
        )
    outbox_id: Any = case((phase == "rest", null()), else_=next_id) if campaign.ab else next_id
    rows = select(
        literal(campaign.workspace_id, BigInteger),
        literal(campaign.id, BigInteger),
        a.c.contact_id,
        a.c.email,
        a.c.email_domain,
        a.c.company_id,
        source_kind,
        source_id,
        phase,
        variant,
        outbox_id,
        scheduled,
        literal(now, UTCDateTime()),
    ).where(text("true") if dialect == "sqlite" else literal(True))
    columns = [
        "workspace_id",
        "campaign_id",
        "contact_id",
        "email",
        "domain",
        "company_id",
        "source_kind",
        "source_id",
        "phase",
        "variant",
        "outbox_id",
        "scheduled_for",
        "created_at",
    ]
    table = CampaignRecipient.__table__
    insert_fn: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert_fn(table)
        .from_select(columns, rows)
        .on_conflict_do_nothing()
        .execution_options(preserve_rowcount=True)
    )
    added = session.connection().execute(stmt).rowcount or 0
    queue_outbox(session, campaign, lo=lo, hi=hi, phases=("all", "test"))
    campaign.recipient_count += added
    campaign.fanout_cursor = hi if hi is not None else campaign.fanout_cursor
    session.flush()
    return added, hi is None


def sender_of(campaign: Campaign, from_name: str | None = None) -> dict[str, str]:
    """The campaign's sender for the composer (a variant's from name over the campaign's);
    validated at schedule time (``lifecycle.check_sender``)."""
    address = (campaign.from_address or "").strip()
    domain = (campaign.sending_domain or "").strip().lower()
    if not domain and "@" in address:
        domain = address.rsplit("@", 1)[1].lower()
    values = {
        "from_address": address,
        "from_name": (from_name or campaign.from_name or "").strip(),
        "reply_to": (campaign.reply_to or "").strip(),
        "sending_domain": domain,
    }
    return {k: v for k, v in values.items() if v}


def _data_for(session: Session, campaign: Campaign) -> tuple[Any, Any, Any]:
    """Per-variant (template id, version, data) as SQL, keyed on the snapshot's variant."""
    r = CampaignRecipient.__table__.c
    data_type: Any = JSON().with_variant(JSONB(), "postgresql")
    base: dict[str, Any] = {"campaign": campaign.key}
    sender = sender_of(campaign)
    if sender:
        base[ROW_SENDER] = sender
    variants = variants_of(session, campaign.id) if campaign.ab else []
    if not variants:
        return (
            literal(campaign.template_id, String),
            literal(campaign.template_version, Integer),
            literal({**base, "utm": campaign.utm} if campaign.utm else base, data_type),
        )
    template = case(
        *[
            (r.variant == v.key, literal(v.template_id or campaign.template_id, String))
            for v in variants
        ],
        else_=literal(campaign.template_id, String),
    )
    version = case(
        *[
            (
                r.variant == v.key,
                literal(
                    v.template_version if v.template_id else campaign.template_version, Integer
                ),
            )
            for v in variants
        ],
        else_=literal(campaign.template_version, Integer),
    )
    data = case(
        *[
            (
                r.variant == v.key,
                literal(
                    {
                        **base,
                        "variant": v.key,
                        "utm": campaign.utm,
                        **({ROW_SENDER: sender_of(campaign, v.from_name)} if sender else {}),
                    },
                    data_type,
                ),
            )
            for v in variants
        ],
        else_=literal(base, data_type),
    )
    return template, version, data


def queue_outbox(
    session: Session,
    campaign: Campaign,
    *,
    lo: int | None,
    hi: int | None,
    phases: tuple[str, ...],
) -> int:
    """Outbox rows for snapshot rows that have an outbox id (set-based, idempotent)."""
    dialect = _dialect(session)
    r = CampaignRecipient.__table__.c
    template, version, data = _data_for(session, campaign)
    status = Status.HELD.value if campaign.status == "paused" else Status.QUEUED.value
    now = clock.utcnow()
    conditions = [r.campaign_id == campaign.id, r.phase.in_(phases), r.outbox_id.is_not(None)]
    if lo is not None:
        conditions.append(r.contact_id > lo)
    if hi is not None:
        conditions.append(r.contact_id <= hi)
    list_id = case((r.source_kind == "list", r.source_id), else_=null())
    rows = select(
        r.outbox_id,
        r.workspace_id,
        r.contact_id,
        r.email,
        literal("marketing"),
        template,
        version,
        data,
        list_id,
        literal(campaign.key),
        literal(idempotency_prefix(campaign)) + cast(r.contact_id, String),
        literal(status),
        literal(0),
        func.coalesce(r.scheduled_for, literal(now, UTCDateTime())),
        literal(now, UTCDateTime()),
    ).where(*conditions)
    columns = [
        "id",
        "workspace_id",
        "contact_id",
        "email",
        "kind",
        "template_id",
        "template_version",
        "data",
        "list_id",
        "campaign_key",
        "idempotency_key",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
    ]
    insert_fn: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert_fn(OutboxMessage.__table__)
        .from_select(columns, rows)
        .on_conflict_do_nothing()
        .execution_options(preserve_rowcount=True)
    )
    return session.connection().execute(stmt).rowcount or 0


def queue_rest(session: Session, campaign: Campaign, variant: str) -> int:
    """After the A/B test: the rest of the audience gets ``variant`` (set-based)."""
    dialect = _dialect(session)
    r: Any = CampaignRecipient.__table__
    if dialect == "postgresql":
        next_id: Any = func.nextval(literal_column("pg_get_serial_sequence('outbox', 'id')"))
        session.connection().execute(
            update(r)
            .where(r.c.campaign_id == campaign.id, r.c.phase == "rest", r.c.outbox_id.is_(None))
            .values(variant=variant, outbox_id=next_id, scheduled_for=bindparam("now"))
            .execution_options(synchronize_session=False),
            {"now": clock.utcnow()},
        )
    else:
        start = session.scalar(select(func.coalesce(func.max(OutboxMessage.id), 0))) or 0
        ranked = (
            select(r.c.id, func.row_number().over(order_by=r.c.id).label("n"))
            .where(r.c.campaign_id == campaign.id, r.c.phase == "rest", r.c.outbox_id.is_(None))
            .subquery()
        )
        session.connection().execute(
            update(r)
            .where(r.c.id == ranked.c.id)
            .values(
                variant=variant,
                outbox_id=start + ranked.c.n,
                scheduled_for=literal(clock.utcnow(), UTCDateTime()),
            )
        )
    return queue_outbox(session, campaign, lo=None, hi=None, phases=("rest",))


def pending_count(session: Session, campaign: Campaign) -> int:
    pending = (Status.QUEUED.value, Status.DEFERRED.value, Status.SENDING.value, Status.HELD.value)
    return int(
        session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(
                OutboxMessage.workspace_id == campaign.workspace_id,
                OutboxMessage.campaign_key == campaign.key,
                OutboxMessage.status.in_(pending),
            )
        )
        or 0
    )


def first_due(session: Session, campaign: Campaign) -> datetime | None:
    return session.scalar(
        select(func.min(OutboxMessage.next_attempt_at)).where(
            OutboxMessage.workspace_id == campaign.workspace_id,
            OutboxMessage.campaign_key == campaign.key,
            OutboxMessage.status == Status.QUEUED.value,
        )
    )


def set_outbox_status(
    session: Session, campaign: Campaign, from_statuses: tuple[str, ...], to_status: str
) -> int:
    values: dict[str, Any] = {"status": to_status}
    if to_status != Status.QUEUED.value:
        values.update(locked_by=None, lease_expires_at=None)
    if to_status == Status.CANCELLED.value:
        values["reason"] = "campaign_cancelled"
    result = session.connection().execute(
        update(cast_table(OutboxMessage))
        .where(
            OutboxMessage.__table__.c.workspace_id == campaign.workspace_id,
            OutboxMessage.__table__.c.campaign_key == campaign.key,
            OutboxMessage.__table__.c.status.in_(from_statuses),
        )
        .values(**values)
    )
    return result.rowcount or 0
