"""The IMAP poll as a background job: ``bounces.poll_imap`` every few minutes.

When ``POSTWISE_BOUNCE_IMAP_HOST`` is set, workers poll the mailbox every
``POSTWISE_BOUNCE_IMAP_POLL_SECONDS`` (``postwise bounces poll-imap`` does the same once,
by hand). Each run enqueues the next one, keyed by its time slot so that two workers
never schedule two chains; ``ensure_poll_scheduled`` (worker start) re-seeds a broken
chain. Intake writes in its own transactions and every message carries a dedupe key,
so a run that is retried after a crash stores nothing twice. See docs/bounces.md.
"""

from __future__ import annotations

import imaplib
import threading
from datetime import datetime, timedelta

import structlog
from sqlalchemy.orm import Session

from postwise.bounces import intake, mailbox
from postwise.core import clock
from postwise.core.settings import Settings, get_settings
from postwise.jobs import queue
from postwise.jobs.registry import JobContext, task
from postwise.storage.database import Database

log = structlog.get_logger(__name__)

POLL = "bounces.poll_imap"
_databases: dict[str, Database] = {}
_lock = threading.Lock()


def _database_of(session: Session) -> Database:
    """Intake commits on its own connections: one engine per database URL, reused."""
    url = session.get_bind().engine.url.render_as_string(hide_password=False)
    with _lock:
        if url not in _databases:
            _databases[url] = Database(url)
        return _databases[url]


def _schedule(session: Session, settings: Settings, at: datetime) -> int | None:
    if not settings.bounce_imap_host:
        return None
    every = settings.bounce_imap_poll_seconds
    slot = int(at.timestamp() // every)
    return queue.enqueue(
        session,
        POLL,
        {},
        run_at=at,
        priority=500,
        max_attempts=1,  # the next slot is the retry
        dedupe_key=f"{POLL}:{slot}",
    )


def ensure_poll_scheduled(session: Session, settings: Settings | None = None) -> int | None:
    """Enqueue a poll now when a mailbox is configured; returns its job id or None."""
    return _schedule(session, settings or get_settings(), clock.utcnow())


@task(POLL)
def poll(ctx: JobContext) -> None:
    """Read the mailbox once, then schedule the next poll."""
    settings = get_settings()
    if not settings.bounce_imap_host:
        return
    now = clock.utcnow()
    try:
        report = mailbox.poll_imap(
            intake.Context.from_settings(settings, _database_of(ctx.session)),
            mailbox.imap_connector(settings),
            folder=settings.bounce_imap_mailbox,
        )
        log.info("bounces.imap_polled", **vars(report) | {"inbound_ids": len(report.inbound_ids)})
    except (imaplib.IMAP4.error, OSError) as exc:
        log.warning("bounces.imap_unreachable", host=settings.bounce_imap_host, error=str(exc))
    finally:
        _schedule(ctx.session, settings, now + timedelta(seconds=settings.bounce_imap_poll_seconds))
