"""Bounces that land in an inbox: polling an IMAP mailbox, reading a maildir.

Some senders cannot point an MX at Postwise; their bounces and complaints arrive in an
ordinary mailbox. Both readers hand every message to ``intake.ingest`` and then mark it
read (IMAP ``\\Seen``, maildir ``S`` flag in ``cur/``), so the next run skips it; a
``dedupe_key`` made of the message's SHA-256 makes a message read twice land once
anyway (another client may clear the flag). With ``delete`` the message is removed
once it is stored. A message that intake cannot store stays unread and is retried on
the next run. See docs/bounces.md (intake).
"""

from __future__ import annotations

import contextlib
import hashlib
import imaplib
import mailbox
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from postwise.bounces import intake
from postwise.core.errors import ValidationFailed
from postwise.core.settings import Settings

log = structlog.get_logger(__name__)

IMAP_BATCH = 200  # messages fetched per poll; the next poll takes the rest


@dataclass
class ReadReport:
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    failed: int = 0
    records: int = 0
    inbound_ids: list[int] = field(default_factory=list)

    def add(self, result: intake.Result) -> None:
        self.read += 1
        if result.duplicate:
            self.duplicates += 1
        else:
            self.stored += 1
            self.records += len(result.record_ids)
            if result.inbound_id is not None:
                self.inbound_ids.append(result.inbound_id)


def content_key(source: str, raw: bytes) -> str:
    return f"{source}:{hashlib.sha256(raw).hexdigest()}"


def read_maildir(ctx: intake.Context, path: Path, *, delete: bool = False) -> ReadReport:
    """Ingest every unread message of the maildir at ``path``."""
    if not (path / "cur").is_dir() or not (path / "new").is_dir():
        raise ValidationFailed(
            f"{path} is not a maildir (it needs cur/, new/ and tmp/)", field="path"
        )
    box = mailbox.Maildir(path, factory=None, create=False)
    report = ReadReport()
    for key in list(box.iterkeys()):
        try:
            message = box.get_message(key)
            if "S" in message.get_flags():
                continue
            raw = box.get_bytes(key)  # as stored: re-serializing could change the bytes
        except (KeyError, FileNotFoundError):
            continue  # another reader took it
        try:
            result = intake.ingest(
                ctx, raw, source="maildir", dedupe_key=content_key("maildir", raw)
            )
        except Exception:
            log.exception("bounces.maildir_failed", key=key)
            report.failed += 1
            continue
        report.add(result)
        if delete:
            box.discard(key)
        else:
            message.set_subdir("cur")
            message.add_flag("S")
            box[key] = message
    return report


# --- IMAP ----------------------------------------------------------------------------

Connect = Callable[[], imaplib.IMAP4]


def imap_connector(settings: Settings) -> Connect:
    """Log in to the configured mailbox (``POSTWISE_BOUNCE_IMAP_*``)."""
    if not settings.bounce_imap_host:
        raise ValidationFailed(
            "no IMAP mailbox is configured: set POSTWISE_BOUNCE_IMAP_HOST (and the username "
            "and password)",
            code="imap_not_configured",
            field="bounce_imap_host",
        )

    def connect() -> imaplib.IMAP4:
        host, port = settings.bounce_imap_host, settings.bounce_imap_port
        client: imaplib.IMAP4
        if settings.bounce_imap_tls == "implicit":
            client = imaplib.IMAP4_SSL(host, port, ssl_context=ssl.create_default_context())
        else:
            client = imaplib.IMAP4(host, port)
            if settings.bounce_imap_tls == "starttls":
                client.starttls(ssl.create_default_context())
        password = settings.bounce_imap_password
        client.login(settings.bounce_imap_username, password.get_secret_value() if password else "")
        return client

    return connect


def _fetched_bytes(data: list[object]) -> bytes | None:
    for item in data:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
            return item[1]
    return None


def _check(response: tuple[str, Sequence[object]], what: str) -> list[object]:
    status, data = response
    if status != "OK":
        raise imaplib.IMAP4.error(f"IMAP {what} failed: {data!r}")
    return list(data)


def poll_imap(
    ctx: intake.Context,
    connect: Connect,
    *,
    folder: str = "INBOX",
    delete: bool = False,
    limit: int = IMAP_BATCH,
) -> ReadReport:
    """Ingest the unread messages of ``folder`` (up to ``limit``), then mark them read.

    Fetches with ``BODY.PEEK[]`` so a message is only marked ``\\Seen`` after intake
    stored it; one that fails stays unread for the next poll.
    """
    report = ReadReport()
    client = connect()
    try:
        _check(client.select(_quoted(folder)), "SELECT")
        data = _check(client.uid("SEARCH", "UNSEEN"), "SEARCH")
        first = data[0] if data else b""
        uids = first.decode("ascii").split() if isinstance(first, bytes) else []
        for uid in uids[:limit]:
            fetched = _check(client.uid("FETCH", uid, "(BODY.PEEK[])"), "FETCH")
            raw = _fetched_bytes(fetched)
            if raw is None:
                continue  # expunged by another client meanwhile
            try:
                result = intake.ingest(ctx, raw, source="imap", dedupe_key=content_key("imap", raw))
            except Exception:
                log.exception("bounces.imap_failed", uid=uid)
                report.failed += 1
                continue
            report.add(result)
            flag = "(\\Deleted \\Seen)" if delete else "(\\Seen)"
            _check(client.uid("STORE", uid, "+FLAGS", flag), "STORE")
        if delete and report.read:
            client.expunge()
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()
    return report


def _quoted(folder: str) -> str:
    """A mailbox name as an IMAP quoted string (names may hold spaces)."""
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
