"""Campaign definitions: create, edit, read; the specs a campaign is made of, validated here.

A campaign is editable while it is a draft or scheduled (scheduling again re-checks
everything); once it sends, what it sends is frozen, so edits are refused with a
``Conflict`` instead of silently changing half an audience's message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from postwise.core.clock import utcnow
from postwise.core.errors import Conflict, NotFound, ValidationFailed
from postwise.storage.tables import Campaign, CampaignVariant

KEY = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,199}$")
EDITABLE = ("draft", "scheduled")
SCHEDULE_MODES = ("now", "at", "local")
CREDITS = ("click", "open")
METRICS = ("open_rate", "click_rate", "conversion_rate", "revenue_per_recipient")
FALLBACKS = ("send_a", "send_nothing", "pick_highest")
VARIANT_KEY = re.compile(r"^[A-Za-z0-9_-]{1,16}$")

PLAIN_FIELDS = (
    "name",
    "template_id",
    "template_version",
    "from_name",
    "from_address",
    "reply_to",
    "sending_domain",
    "pace_per_minute",
    "goal_event",
    "attribution_window_hours",
    "revenue_property",
    "credit",
)
SPEC_FIELDS = ("utm", "audience", "schedule", "ab", "guardrails")


def _ids(value: Any, field: str) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ValidationFailed(f"{field} must be a list of ids", field=field)
    return list(value)


def check_audience(spec: Any) -> dict[str, Any]:
    """``sources`` in priority order (the snapshot names the first that matched)."""
    if not isinstance(spec, Mapping):
        raise ValidationFailed("audience must be an object", field="audience")
    sources = spec.get("sources")
    if sources is None:
        sources = [{"segment": i} for i in _ids(spec.get("segment_ids"), "audience.segment_ids")]
        sources += [{"list": i} for i in _ids(spec.get("list_ids"), "audience.list_ids")]
    out: list[dict[str, int]] = []
    for source in sources if isinstance(sources, list) else [None]:
        if (
            not isinstance(source, Mapping)
            or len(source) != 1
            or next(iter(source)) not in ("segment", "list")
            or not isinstance(next(iter(source.values())), int)
        ):
            raise ValidationFailed(
                'audience.sources items look like {"segment": 12} or {"list": 3}',
                field="audience.sources",
            )
        out.append(dict(source))
    return {
        "sources": out,
        "exclude_segment_ids": _ids(
            spec.get("exclude_segment_ids"), "audience.exclude_segment_ids"
        ),
        "exclude_list_ids": _ids(spec.get("exclude_list_ids"), "audience.exclude_list_ids"),
    }


def check_schedule(spec: Any) -> tuple[dict[str, Any], datetime | None]:
    if spec is None or spec == {}:
        return {"mode": "now"}, None
    if not isinstance(spec, Mapping) or spec.get("mode") not in SCHEDULE_MODES:
        raise ValidationFailed(
            f"schedule.mode must be one of {', '.join(SCHEDULE_MODES)}", field="schedule.mode"
        )
    mode = spec["mode"]
    if mode == "now":
        return {"mode": "now"}, None
    try:
        at = datetime.fromisoformat(str(spec.get("at")))
    except ValueError:
        raise ValidationFailed(
            "schedule.at must be an ISO date-time", field="schedule.at"
        ) from None
    if mode == "at":
        if at.tzinfo is None:
            raise ValidationFailed(
                "schedule.at needs a UTC offset (e.g. 2026-12-01T09:00:00+00:00)",
                field="schedule.at",
            )
        return {"mode": "at", "at": at.isoformat()}, at
    # local: the wall-clock time is read in each recipient's zone; the offset is ignored.
    fallback = str(spec.get("fallback_timezone") or "UTC")
    try:
        ZoneInfo(fallback)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(
            f"unknown time zone {fallback!r}", field="schedule.fallback_timezone"
        ) from None
    local = at.replace(tzinfo=None)
    return {"mode": "local", "at": local.isoformat(), "fallback_timezone": fallback}, None


def check_ab(spec: Any) -> dict[str, Any]:
    if not spec:
        return {}
    if not isinstance(spec, Mapping):
        raise ValidationFailed("ab must be an object", field="ab")
    share = spec.get("test_share", 0.2)
    if not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise ValidationFailed("ab.test_share must be in (0, 1]", field="ab.test_share")
    metric = spec.get("metric", "click_rate")
    if metric not in METRICS:
        raise ValidationFailed(f"ab.metric must be one of {', '.join(METRICS)}", field="ab.metric")
    fallback = spec.get("fallback", "send_a")
    if fallback not in FALLBACKS:
        raise ValidationFailed(
            f"ab.fallback must be one of {', '.join(FALLBACKS)}", field="ab.fallback"
        )
    hours = spec.get("duration_hours", 4)
    if not isinstance(hours, (int, float)) or hours <= 0:
        raise ValidationFailed("ab.duration_hours must be positive", field="ab.duration_hours")
    method = spec.get("method")
    if method not in (None, "ztest", "bayes"):
        raise ValidationFailed("ab.method must be ztest or bayes", field="ab.method")
    return {
        "test_share": float(share),
        "metric": metric,
        "fallback": fallback,
        "duration_hours": float(hours),
        "method": method,
    }


def check_guardrails(spec: Any) -> dict[str, Any]:
    if not spec:
        return {}
    if not isinstance(spec, Mapping):
        raise ValidationFailed("guardrails must be an object", field="guardrails")
    out: dict[str, Any] = {}
    for name in ("min_sample", "complaint_rate", "hard_bounce_rate"):
        if name in spec:
            value = spec[name]
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValidationFailed(
                    f"guardrails.{name} must be a positive number", field=f"guardrails.{name}"
                )
            out[name] = value
    return out


def _variants(session: Session, campaign: Campaign, specs: Any) -> None:
    if not isinstance(specs, list) or len(specs) == 1:
        raise ValidationFailed(
            "variants must be a list of two or more (or empty for no test)", field="variants"
        )
    for old in session.scalars(
        select(CampaignVariant).where(CampaignVariant.campaign_id == campaign.id)
    ):
        session.delete(old)
    session.flush()
    seen: set[str] = set()
    for spec in specs:
        key = str(spec.get("key", "")) if isinstance(spec, Mapping) else ""
        if not VARIANT_KEY.match(key) or key in seen:
            raise ValidationFailed("each variant needs a distinct short key", field="variants.key")
        seen.add(key)
        weight = spec.get("weight", 1.0)
        if not isinstance(weight, (int, float)) or weight <= 0:
            raise ValidationFailed("variants.weight must be positive", field="variants.weight")
        session.add(
            CampaignVariant(
                campaign_id=campaign.id,
                key=key,
                subject=spec.get("subject"),
                from_name=spec.get("from_name"),
                preheader=spec.get("preheader"),
                template_id=str(spec["template_id"]) if spec.get("template_id") else None,
                template_version=spec.get("template_version"),
                weight=float(weight),
            )
        )
    session.flush()


def _apply(session: Session, campaign: Campaign, values: Mapping[str, Any]) -> None:
    unknown = set(values) - set(PLAIN_FIELDS) - set(SPEC_FIELDS) - {"key", "variants"}
    if unknown:
        raise ValidationFailed(f"unknown field {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
    for name in PLAIN_FIELDS:
        if name in values:
            setattr(campaign, name, values[name])
    if campaign.template_id is not None:
        campaign.template_id = str(campaign.template_id)
    if campaign.credit not in CREDITS:
        raise ValidationFailed("credit must be click or open", field="credit")
    if campaign.pace_per_minute is not None and campaign.pace_per_minute <= 0:
        raise ValidationFailed("pace_per_minute must be positive", field="pace_per_minute")
    if not str(campaign.name or "").strip():
        raise ValidationFailed("a campaign needs a name", field="name")
    if "audience" in values:
        campaign.audience = check_audience(values["audience"])
    if "schedule" in values:
        campaign.schedule, campaign.send_at = check_schedule(values["schedule"])
    if "ab" in values:
        campaign.ab = check_ab(values["ab"])
    if "guardrails" in values:
        campaign.guardrails = check_guardrails(values["guardrails"])
    if "utm" in values:
        utm = values["utm"] or {}
        if not isinstance(utm, Mapping) or not all(isinstance(v, str) for v in utm.values()):
            raise ValidationFailed("utm must map names to strings", field="utm")
        campaign.utm = dict(utm)
    campaign.updated_at = utcnow()
    session.flush()
    if values.get("variants"):
        _variants(session, campaign, values["variants"])


def create_campaign(session: Session, values: Mapping[str, Any]) -> Campaign:
    key = str(values.get("key", ""))
    if not KEY.match(key):
        raise ValidationFailed(
            "key must be lower-case letters, digits, '_', '.', '-' (up to 200)", field="key"
        )
    if session.scalar(select(Campaign.id).where(Campaign.key == key)) is not None:
        raise Conflict(f"a campaign with key {key!r} already exists", field="key")
    campaign = Campaign(key=key, name=str(values.get("name") or key), status="draft")
    campaign.audience, campaign.schedule = {"sources": []}, {"mode": "now"}
    campaign.utm, campaign.ab, campaign.guardrails = {}, {}, {}
    session.add(campaign)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"a campaign with key {key!r} already exists", field="key") from None
    _apply(session, campaign, {k: v for k, v in values.items() if k != "key"})
    return campaign


def get_campaign(session: Session, campaign_id: int, *, lock: bool = False) -> Campaign:
    stmt = select(Campaign).where(Campaign.id == campaign_id)
    if lock:
        stmt = stmt.with_for_update()
    campaign = session.scalar(stmt)
    if campaign is None:
        raise NotFound(f"campaign {campaign_id} does not exist", field="id")
    return campaign


def get_by_key(session: Session, key: str) -> Campaign | None:
    return session.scalar(select(Campaign).where(Campaign.key == key))


def update_campaign(session: Session, campaign_id: int, values: Mapping[str, Any]) -> Campaign:
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status not in EDITABLE:
        raise Conflict(
            f"campaign {campaign.key!r} is {campaign.status}: only draft or scheduled "
            "campaigns can be edited",
            code="campaign_not_editable",
        )
    if "key" in values and values["key"] != campaign.key:
        raise ValidationFailed("a campaign's key cannot change", field="key")
    _apply(session, campaign, values)
    return campaign


def list_campaigns(session: Session, *, status: str | None = None) -> list[Campaign]:
    stmt = select(Campaign).order_by(Campaign.id.desc())
    if status:
        stmt = stmt.where(Campaign.status == status)
    return list(session.scalars(stmt))


def variants_of(session: Session, campaign_id: int) -> list[CampaignVariant]:
    return list(
        session.scalars(
            select(CampaignVariant)
            .where(CampaignVariant.campaign_id == campaign_id)
            .order_by(CampaignVariant.key)
        )
    )


def as_dict(session: Session, campaign: Campaign) -> dict[str, Any]:
    out: dict[str, Any] = {
        c: getattr(campaign, c)
        for c in (
            "id",
            "key",
            "status",
            "paused_reason",
            "winner_variant",
            "ab_result",
            "recipient_count",
            "test_send_count",
            *PLAIN_FIELDS,
            *SPEC_FIELDS,
        )
    }
    for c in (
        "send_at",
        "created_at",
        "updated_at",
        "scheduled_at",
        "started_at",
        "finished_at",
        "paused_at",
        "cancelled_at",
    ):
        value = getattr(campaign, c)
        out[c] = value.isoformat() if value is not None else None
    out["variants"] = [
        {
            "key": v.key,
            "subject": v.subject,
            "from_name": v.from_name,
            "preheader": v.preheader,
            "template_id": v.template_id,
            "weight": v.weight,
        }
        for v in variants_of(session, campaign.id)
    ]
    return out
