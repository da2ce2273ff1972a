"""The legal moves of a campaign, each checked before anything is written.

    draft --schedule--> scheduled --(fan-out job)--> sending --(all handed over)--> sent
    scheduled|sending --pause--> paused --resume--> scheduled|sending
    draft|scheduled|sending|paused --cancel--> cancelled

A refused move raises ``Conflict`` (409) with what the state is and what is allowed,
and changes nothing. Scheduling checks what would otherwise fail a million times at
send time: an audience, a template, a verified sender (an active DKIM key for the
sending domain) and a built message that carries an unsubscribe link.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from postwise.campaigns import audience, fanout, store
from postwise.campaigns.jobs import FANOUT, enqueue_fanout
from postwise.core import clock
from postwise.core.errors import Conflict, ValidationFailed
from postwise.core.settings import get_settings
from postwise.delivery import outbox
from postwise.delivery.compose import ROW_SENDER
from postwise.delivery.outbox import PENDING, Status
from postwise.storage.tables import Campaign, Contact, DkimKeyRecord, Template

PAUSABLE = ("scheduled", "sending")
CANCELLABLE = ("draft", "scheduled", "sending", "paused")


def _refuse(campaign: Campaign, action: str, allowed: tuple[str, ...]) -> Conflict:
    return Conflict(
        f"cannot {action} campaign {campaign.key!r}: it is {campaign.status} "
        f"(allowed only when it is {' or '.join(allowed)})",
        code=f"campaign_not_{action}able",
    )


def _template(session: Session, template_id: str | None, field: str) -> Template:
    if not template_id:
        raise ValidationFailed(
            "the campaign has no template", code="template_required", field=field
        )
    try:
        ident = int(template_id)
    except ValueError:
        raise ValidationFailed("template_id must be a stored template's id", field=field) from None
    template = session.get(Template, ident)
    if template is None:
        raise ValidationFailed(f"template {template_id} does not exist", field=field)
    return template


def _address(value: str | None, field: str) -> str | None:
    from postwise.contacts.emails import normalize_email

    if not value:
        return None
    try:
        return normalize_email(value).address
    except ValidationFailed as exc:
        raise ValidationFailed(exc.message, code="invalid_sender", field=field) from None


def check_sender(session: Session, campaign: Campaign) -> None:
    """A valid From and Reply-To, a From domain aligned with the sending domain (DMARC:
    same domain or a subdomain of it, since d= is the sending domain), and a verified
    sending domain."""
    from_address = _address(campaign.from_address, "from_address")
    _address(campaign.reply_to, "reply_to")
    domain = (campaign.sending_domain or "").strip().lower()
    if not domain and from_address:
        domain = from_address.rsplit("@", 1)[1]
    if not domain:
        raise ValidationFailed(
            "the campaign has no sending domain (set sending_domain or from_address)",
            code="sender_required",
            field="sending_domain",
        )
    key = session.scalar(
        select(DkimKeyRecord.id).where(
            DkimKeyRecord.domain == domain, DkimKeyRecord.active.is_(True)
        )
    )
    if key is None:
        raise ValidationFailed(
            f"sending domain {domain} is not verified: it has no active DKIM key "
            "(postwise dkim generate, then publish the DNS record)",
            code="sender_unverified",
            field="sending_domain",
        )
    if from_address and domain:
        from_domain = from_address.rsplit("@", 1)[1]
        if from_domain != domain and not from_domain.endswith("." + domain):
            raise ValidationFailed(
                f"from_address {from_address} is not in the sending domain {domain} "
                "(DMARC alignment would fail)",
                code="sender_unaligned",
                field="from_address",
            )


def check_unsubscribe(session: Session, campaign: Campaign, template_id: str) -> None:
    """Build the message for one real recipient the way the deliverer would, and refuse
    when it has no unsubscribe link (the footer stage adds one unless it cannot)."""
    from postwise.delivery.compose import BuildError
    from postwise.delivery.service import build_composer

    contact = session.scalar(select(Contact).order_by(Contact.id).limit(1))
    row = outbox.Claimed(
        id=0,
        workspace_id=campaign.workspace_id,
        contact_id=contact.id if contact is not None else None,
        email=contact.email if contact is not None else "preview@example.com",
        kind="marketing",
        list_id=None,
        template_id=template_id,
        data={"campaign": campaign.key, ROW_SENDER: fanout.sender_of(campaign)},
        raw=None,
        mail_from=None,
        message_id=None,
        attempt=1,
        first_attempt_at=clock.utcnow(),
        worker_id="campaign-check",
        campaign_key=campaign.key,
    )
    try:
        built = build_composer(get_settings())(session, row)
    except BuildError as exc:
        raise ValidationFailed(
            f"the campaign's message cannot be built: {exc}",
            code="message_unbuildable",
            field="template_id",
        ) from None
    if b"List-Unsubscribe" not in built.data or b"/u/" not in built.data:
        raise ValidationFailed(
            "the built message has no unsubscribe link",
            code="unsubscribe_required",
            field="template_id",
        )


def schedule(session: Session, campaign_id: int) -> Campaign:
    campaign = store.get_campaign(session, campaign_id, lock=True)
    if campaign.status != "draft":
        raise Conflict(
            f"cannot schedule campaign {campaign.key!r}: it is {campaign.status} "
            "(only a draft can be scheduled)",
            code="campaign_not_schedulable",
        )
    if not (campaign.audience or {}).get("sources"):
        raise ValidationFailed(
            "the campaign has no audience: name at least one segment or list",
            code="audience_required",
            field="audience",
        )
    audience.check_sources(session, campaign)
    template = _template(session, campaign.template_id, "template_id")
    campaign.template_version = template.version
    check_sender(session, campaign)
    check_unsubscribe(session, campaign, str(template.id))
    variants = store.variants_of(session, campaign.id)
    if campaign.ab and len(variants) < 2:
        raise ValidationFailed(
            "an A/B test needs two or more variants", code="variants_required", field="variants"
        )
    for variant in variants:
        if variant.template_id:
            vt = _template(session, variant.template_id, "variants.template_id")
            variant.template_version = vt.version
        elif variant.subject or variant.preheader:
            variant.template_id, variant.template_version = _variant_template(
                session, campaign, template, variant.key, variant.subject, variant.preheader
            )
    now = clock.utcnow()
    campaign.status = "scheduled"
    campaign.scheduled_at = now
    campaign.updated_at = now
    session.flush()
    enqueue_fanout(session, campaign, at=fanout.start_time(campaign, now))
    return campaign


def _variant_template(
    session: Session,
    campaign: Campaign,
    base: Template,
    key: str,
    subject: str | None,
    preheader: str | None,
) -> tuple[str, int]:
    """A subject or preheader variant becomes a stored template (the base's content with
    that subject), so the deliverer builds it like any other and the send is auditable."""
    name = f"campaign {campaign.key} variant {key}"[:200]
    existing = session.scalar(select(Template).where(Template.name == name))
    if existing is None:
        existing = Template(
            name=name,
            kind="marketing",
            subject=subject or base.subject,
            preheader=preheader if preheader is not None else base.preheader,
            html=base.html,
            text=base.text,
            mjml=base.mjml,
            version=1,
        )
        session.add(existing)
        session.flush()
    return str(existing.id), existing.version


def pause(session: Session, campaign_id: int, reason: str = "paused by a person") -> Campaign:
    campaign = store.get_campaign(session, campaign_id, lock=True)
    if campaign.status not in PAUSABLE:
        raise _refuse(campaign, "pause", PAUSABLE)
    now = clock.utcnow()
    campaign.status = "paused"
    campaign.paused_reason = reason
    campaign.paused_at = now
    campaign.updated_at = now
    session.flush()
    # Leased rows too: their worker's fence check then fails before the hand-over.
    fanout.set_outbox_status(session, campaign, PENDING, Status.HELD.value)
    return campaign


def resume(session: Session, campaign_id: int) -> Campaign:
    campaign = store.get_campaign(session, campaign_id, lock=True)
    if campaign.status != "paused":
        raise Conflict(
            f"cannot resume campaign {campaign.key!r}: it is {campaign.status} "
            "(only a paused campaign can be resumed)",
            code="campaign_not_resumable",
        )
    now = clock.utcnow()
    campaign.status = "sending" if campaign.started_at is not None else "scheduled"
    campaign.paused_reason = None
    campaign.updated_at = now
    session.flush()
    fanout.set_outbox_status(session, campaign, (Status.HELD.value,), Status.QUEUED.value)
    enqueue_fanout(session, campaign, at=now, tag=f"resume:{now.isoformat()}")
    from postwise.delivery.service import kick

    kick(session)
    return campaign


def cancel(session: Session, campaign_id: int) -> Campaign:
    campaign = store.get_campaign(session, campaign_id, lock=True)
    if campaign.status not in CANCELLABLE:
        raise _refuse(campaign, "cancel", CANCELLABLE)
    now = clock.utcnow()
    campaign.status = "cancelled"
    campaign.cancelled_at = now
    campaign.updated_at = now
    session.flush()
    fanout.set_outbox_status(
        session, campaign, (*PENDING, Status.HELD.value), Status.CANCELLED.value
    )
    return campaign


def test_send(session: Session, campaign_id: int, emails: list[str]) -> list[int]:
    """Send the campaign's message to chosen addresses now; transactional-free marketing
    rows without ``campaign_key`` so reports and caps never count them."""
    campaign = store.get_campaign(session, campaign_id)
    if not emails or len(emails) > 20:
        raise ValidationFailed("give 1 to 20 addresses", field="emails")
    template = _template(session, campaign.template_id, "template_id")
    now = clock.utcnow()
    ids = outbox.enqueue(
        session,
        [
            outbox.NewMessage(
                email=email.strip(),
                kind="marketing",
                template_id=str(template.id),
                template_version=template.version,
                data={
                    "campaign": campaign.key,
                    "test_send": True,
                    ROW_SENDER: fanout.sender_of(campaign),
                },
                idempotency_key=f"campaign-test:{campaign.key}:{email.strip().lower()}:"
                f"{now.isoformat()}",
            )
            for email in emails
        ],
    )
    campaign.test_send_count += len(ids)
    from postwise.delivery.service import kick

    kick(session)
    return ids


def as_status(campaign: Campaign) -> dict[str, Any]:
    return {"id": campaign.id, "key": campaign.key, "status": campaign.status}


__all__ = ["FANOUT", "cancel", "pause", "resume", "schedule", "test_send"]
