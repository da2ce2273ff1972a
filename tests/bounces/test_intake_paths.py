"""Each way a raw bounce arrives ends as a classified record tied to its message:
a real SMTP conversation with the inbound listener (aiosmtpd), a maildir on disk, and
a real IMAP server (a private Dovecot, ``dovecot_peer.py``). Both databases."""

from __future__ import annotations

import mailbox
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from postwise.bounces import intake
from postwise.bounces import mailbox as bounce_mailbox
from postwise.bounces.inbound import InboundServer
from postwise.core.errors import ValidationFailed
from postwise.storage.database import Database
from postwise.storage.tables import BounceRecord, InboundMessage, Suppression
from tests.bounces.dovecot_peer import DovecotInstance, dovecot  # noqa: F401
from tests.bounces.scenario import BOUNCE_DOMAIN, Audience, audience, context, dsn, message_id, verp

CORP = ["ann@corp.example", "bob@corp.example", "cat@corp.example"]


@pytest.fixture
def people(db: Database) -> Audience:
    return audience(db, CORP)


@pytest.fixture
def server(db: Database) -> Iterator[InboundServer]:
    listener = InboundServer(context(db), BOUNCE_DOMAIN, port=0, max_bytes=100_000)
    listener.start()
    yield listener
    listener.stop()


def _records(db: Database, ws: int) -> dict[str, BounceRecord]:
    with db.tenant(ws) as s:
        return {r.email: r for r in s.scalars(select(BounceRecord))}


def test_a_dsn_sent_to_the_verp_address_over_smtp_is_recorded(
    db: Database, people: Audience, server: InboundServer
) -> None:
    ann = CORP[0]
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        refused = client.sendmail("", [verp(people.outbox[ann])], dsn(ann))
        assert refused == {}
        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            client.sendmail("", ["someone@elsewhere.example"], dsn(ann))
        assert caught.value.recipients["someone@elsewhere.example"][0] == 550
        with pytest.raises(smtplib.SMTPSenderRefused):  # over max_bytes: refused whole
            client.sendmail("", [verp(people.outbox[ann])], dsn(ann) + b"x" * 200_000)
    record = _records(db, people.workspace_id)[ann]
    assert (record.source, record.reason, record.hard, record.status) == (
        "smtp",
        "userunknown",
        True,
        "5.1.1",
    )
    assert record.outbox_id == people.outbox[ann] and record.verdict == "suppressed"
    with db.system() as s:
        inbound = s.scalars(select(InboundMessage)).one()
        assert inbound.rcpt_to == [verp(people.outbox[ann])] and inbound.mail_from == "<>"
        assert inbound.workspace_id == people.workspace_id and inbound.parsed


def test_a_maildir_is_read_once_and_messages_are_tied_by_return_path_or_message_id(
    db: Database, people: Audience, tmp_path: Path
) -> None:
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    ann, bob = CORP[0], CORP[1]
    box.add(dsn(ann, return_path=verp(people.outbox[ann])))
    box.add(dsn(bob, original_message_id=message_id(people.outbox[bob]), status="5.2.2",
                diagnostic="552 5.2.2 Mailbox full"))  # fmt: skip
    box.add(b"From: friend@corp.example\r\nSubject: lunch?\r\n\r\nare you free\r\n")
    ctx = context(db)
    report = bounce_mailbox.read_maildir(ctx, tmp_path / "bounces")
    assert (report.read, report.stored, report.records, report.failed) == (3, 3, 2, 0)
    again = bounce_mailbox.read_maildir(ctx, tmp_path / "bounces")
    assert again.read == 0  # marked seen
    records = _records(db, people.workspace_id)
    assert records[ann].evidence["tied_by"] == "verp" and records[ann].hard
    assert records[bob].evidence["tied_by"] == "message_id"
    assert (records[bob].reason, records[bob].hard, records[bob].verdict) == (
        "mailboxfull",
        False,
        "soft_counted",
    )
    with db.system() as s:
        kinds = sorted(s.scalars(select(InboundMessage.kind)))
    assert kinds == ["bounce", "bounce", "not_bounce"]
    with pytest.raises(ValidationFailed):
        bounce_mailbox.read_maildir(ctx, tmp_path)


def test_an_imap_mailbox_is_polled_and_messages_marked_seen(
    db: Database,
    people: Audience,
    dovecot: DovecotInstance,  # noqa: F811
) -> None:
    cat = CORP[2]
    dovecot.append(dsn(cat, return_path=verp(people.outbox[cat])))
    dovecot.append(b"From: someone@corp.example\r\nSubject: hello\r\n\r\nnot a bounce\r\n")
    ctx = context(db)
    report = bounce_mailbox.poll_imap(ctx, dovecot.client)
    assert (report.read, report.stored, report.records) == (2, 2, 1)
    assert bounce_mailbox.poll_imap(ctx, dovecot.client).read == 0  # all \Seen now
    record = _records(db, people.workspace_id)[cat]
    assert (record.source, record.reason, record.verdict) == ("imap", "userunknown", "suppressed")
    with db.tenant(people.workspace_id) as s:
        assert [r.value for r in s.scalars(select(Suppression))] == [cat]
    # With delete, a new message is removed once stored.
    dovecot.append(dsn(cat, return_path=verp(people.outbox[cat]), status="4.2.2",
                       diagnostic="452 4.2.2 Over quota"))  # fmt: skip
    report = bounce_mailbox.poll_imap(ctx, dovecot.client, delete=True)
    assert report.stored == 1
    client = dovecot.client()
    try:
        client.select("INBOX")
        status, data = client.search(None, "ALL")
        assert status == "OK" and len(data[0].split()) == 2  # the first two, seen, stay
    finally:
        client.logout()


def test_intake_keeps_garbage_as_unparsed_and_never_raises(db: Database) -> None:
    ctx = context(db)
    for raw in (b"", b"\x00\xff" * 1000, b"Content-Type: multipart/report; boundary=x\r\n\r\n--x"):
        result = intake.ingest(ctx, raw, source="http")
        assert result.inbound_id is not None and result.record_ids == []
