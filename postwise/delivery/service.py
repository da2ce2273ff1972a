"""Delivery as the rest of the platform uses it: send, send to a list, and the worker task.

``send_to_contact`` and ``send_to_list`` queue outbox rows (and a drain job) in the
caller's transaction; the ``delivery.drain`` task runs the delivery loop for a while and
schedules itself again while rows remain or will fall due. ``build_transport`` and
``build_deliverer`` make the configured pieces (docs/delivery.md).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from postwise.bounces import filterblock, intake
from postwise.contacts.actions import get_contact, get_contact_by_email
from postwise.contacts.lists import get_list
from postwise.core import clock
from postwise.core.errors import ValidationFailed
from postwise.core.settings import Settings, get_settings
from postwise.delivery import outbox, preferences, throttle
from postwise.delivery.compose import INLINE_TEMPLATE, TemplateComposer, stored_templates
from postwise.delivery.deliverer import Deliverer, Policy
from postwise.delivery.transports.base import MailTransport
from postwise.jobs import queue
from postwise.jobs.registry import JobContext, task
from postwise.privacy.hashing import AddressHasher
from postwise.storage.database import Database
from postwise.storage.tables import Contact, ListMembership

log = structlog.get_logger(__name__)

DRAIN = "delivery.drain"
DRAIN_SECONDS = 20.0  # one drain job's share of a worker before it yields and re-queues
LIST_BATCH = 1000


# --- queueing ---------------------------------------------------------------------------


def kick(session: Session, at: datetime | None = None) -> int:
    """Make sure a drain job runs at ``at`` (default now); one job per second at most."""
    at = at or clock.utcnow()
    return queue.enqueue(
        session,
        DRAIN,
        {},
        workspace_id=None,
        run_at=at,
        priority=50,
        max_attempts=3,
        dedupe_key=f"{DRAIN}:{at.replace(microsecond=0).isoformat()}",
    )


def _template_fields(
    session: Session,
    template_id: str | None,
    inline: Mapping[str, Any] | None,
    data: Mapping[str, Any] | None,
) -> dict[str, Any]:
    if not template_id and not inline:
        raise ValidationFailed(
            "give template_id, or an inline template (subject with html or text)",
            code="template_required",
            field="template_id",
        )
    out = dict(data or {})
    if template_id and not inline:
        from postwise.messages import store

        try:
            store.get_template(session, int(template_id))
        except ValueError:
            raise ValidationFailed(
                "template_id must be the id of a stored template", field="template_id"
            ) from None
    if inline:
        if not str(inline.get("subject", "")).strip() or not (
            str(inline.get("html", "")).strip() or str(inline.get("text", "")).strip()
        ):
            raise ValidationFailed(
                "an inline template needs a subject and html or text",
                code="template_incomplete",
                field="subject",
            )
        out[INLINE_TEMPLATE] = {k: str(v) for k, v in inline.items()}
    return out


def send_to_contact(
    session: Session,
    *,
    contact_id: int | None = None,
    email: str | None = None,
    template_id: str | None = None,
    template: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    kind: str = "transactional",
    idempotency_key: str | None = None,
) -> int:
    """Queue one message to one contact (tenant session); returns the outbox id."""
    if (contact_id is None) == (email is None):
        raise ValidationFailed("give exactly one of contact_id and email", field="contact_id")
    contact = get_contact(session, contact_id) if contact_id is not None else None
    if contact is None:
        contact = get_contact_by_email(session, str(email))
    [outbox_id] = outbox.enqueue(
        session,
        [
            outbox.NewMessage(
                email=contact.email,
                kind=kind,
                contact_id=contact.id,
                template_id=template_id,
                data=_template_fields(session, template_id, template, data),
                idempotency_key=idempotency_key,
            )
        ],
    )
    kick(session)
    return outbox_id


def send_to_list(
    session: Session,
    list_id: int,
    *,
    template_id: str | None = None,
    template: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    campaign_key: str | None = None,
    topic: str | None = None,
) -> int:
    """Queue one marketing message per subscribed member, in batches; returns how many.

    With a ``campaign_key`` a second call queues nobody twice (idempotency key per
    campaign and contact). Unsubscribed, bounced and complained contacts are left out
    here already; suppression is checked again at send time.
    """
    get_list(session, list_id)
    preferences.check_topic(session, topic)
    fields = _template_fields(session, template_id, template, data)
    queued = 0
    last_id = 0
    while True:
        batch = session.execute(
            select(Contact.id, Contact.email)
            .join(ListMembership, ListMembership.contact_id == Contact.id)
            .where(
                ListMembership.list_id == list_id,
                ListMembership.status == "subscribed",
                Contact.status == "subscribed",
                Contact.id > last_id,
            )
            .order_by(Contact.id)
            .limit(LIST_BATCH)
        ).all()
        if not batch:
            break
        outbox.enqueue(
            session,
            [
                outbox.NewMessage(
                    email=email,
                    kind="marketing",
                    contact_id=cid,
                    list_id=list_id,
                    template_id=template_id,
                    data=fields,
                    campaign_key=campaign_key,
                    idempotency_key=f"campaign:{campaign_key}:{cid}" if campaign_key else None,
                    topic=topic,
                )
                for cid, email in batch
            ],
        )
        queued += len(batch)
        last_id = batch[-1][0]
    if queued:
        kick(session)
    return queued


# --- the configured pieces --------------------------------------------------------------


def build_transport(settings: Settings) -> MailTransport:
    if settings.delivery_transport == "capture":
        from postwise.delivery.transports.maildir import MaildirTransport

        return MaildirTransport(settings.resolved_capture_dir())
    if settings.delivery_transport == "relay":
        from postwise.delivery.transports.smtp import Server, SmtpRelay

        password = settings.relay_password.get_secret_value() if settings.relay_password else None
        return SmtpRelay(
            Server(
                settings.relay_host,
                settings.relay_port,
                tls=settings.relay_tls,
                username=settings.relay_username or None,
                password=password if settings.relay_username else None,
                local_hostname=settings.delivery_helo_hostname or None,
            ),
            pool_size=settings.relay_pool_size,
        )
    from postwise.delivery.transports.mx import MxTransport

    return MxTransport(local_hostname=settings.delivery_helo_hostname or None)


def build_composer(settings: Settings) -> TemplateComposer:
    from postwise.messages.pipeline import MessageBuilder, Sender
    from postwise.tracking.tokens import TokenSigner

    domain = settings.delivery_from_address.rsplit("@", 1)[-1]
    sender = Sender(
        from_address=settings.delivery_from_address,
        sending_domain=domain,
        bounce_domain=settings.delivery_bounce_domain,
        base_url=settings.base_url,
        postal_address=settings.delivery_postal_address,
    )
    secret = settings.resolved_secret_key()
    return TemplateComposer(
        sender, MessageBuilder(TokenSigner(secret)), stored_templates, dkim_secret=secret
    )


def build_deliverer(db: Database, settings: Settings, worker_id: str) -> Deliverer:
    limits = throttle.Limits(
        settings.delivery_other_connections, settings.delivery_other_per_minute
    )
    return Deliverer(
        db,
        build_transport(settings),
        hasher=AddressHasher.from_secret(settings.resolved_secret_key()),
        worker_id=worker_id,
        composer=build_composer(settings),
        policy=Policy(
            batch_size=settings.delivery_batch_size,
            concurrency=settings.delivery_concurrency,
            lease_seconds=settings.delivery_lease_seconds,
            give_up_after=settings.delivery_give_up_hours * 3600,
            retry_base=settings.delivery_retry_base_seconds,
            warmup_start=settings.delivery_warmup_start,
        ),
        pacer=throttle.Pacer(
            clock=_monotonic,
            other=limits,
            global_per_second=settings.delivery_global_per_second,
        ),
        final_hop=settings.delivery_transport == "mx",
        paces=filterblock.pace_reader(db),
        on_rejected=intake.SendTimeRecorder(intake.Context.from_settings(settings, db)),
    )


def _monotonic() -> float:
    import time

    return time.monotonic()


_databases: dict[str, Database] = {}
_databases_lock = threading.Lock()


def _database_of(session: Session) -> Database:
    """The drain task gets a session; delivery commits per message on its own connections."""
    url = session.get_bind().engine.url.render_as_string(hide_password=False)
    with _databases_lock:
        if url not in _databases:
            _databases[url] = Database(url)
        return _databases[url]


@task(DRAIN)
def drain(ctx: JobContext) -> None:
    """Deliver due outbox rows for up to ``DRAIN_SECONDS``, then schedule the next drain."""
    settings = get_settings()
    db = _database_of(ctx.session)
    deliverer = build_deliverer(db, settings, f"{ctx.worker_id}/job{ctx.job_id}")
    totals = asyncio.run(deliverer.run(until_idle=True, max_seconds=DRAIN_SECONDS))
    log.info("delivery.drained", **{k: v for k, v in vars(totals).items() if v})
    due = outbox.next_due(ctx.session)
    if due is not None:
        kick(ctx.session, max(due, clock.utcnow() + timedelta(seconds=1)))
