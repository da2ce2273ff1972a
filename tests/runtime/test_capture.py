"""The capture SMTP server keeps what it is sent, and the API shows it to its workspace only."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from postwise.core.pagination import encode_cursor
from postwise.delivery import capture
from postwise.storage.database import Database
from postwise.storage.tables import CapturedMessage
from postwise.workspaces.actions import NewWorkspace, create_api_key


@pytest.fixture
def smtp_server(db: Database) -> Iterator[capture.CaptureServer]:
    server = capture.CaptureServer(db, "127.0.0.1", 0)
    server.start()
    yield server
    server.stop()


def message(to: str, subject: str, workspace: int | str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Postwise <news@postwise.test>"
    msg["To"] = to
    msg["Subject"] = subject
    if workspace is not None:
        msg[capture.WORKSPACE_HEADER] = str(workspace)
    msg.set_content("Plain body\n")
    msg.add_alternative("<p>HTML body</p>\n", subtype="html")
    return msg


def send(server: capture.CaptureServer, msg: EmailMessage, rcpt: list[str] | None = None) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
        refused = smtp.send_message(msg, to_addrs=rcpt)
    assert refused == {}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def raw_store(db: Database, raw: bytes, rcpt: list[str] | None = None) -> CapturedMessage:
    with db.system() as session:
        return capture.store(session, "sender@postwise.test", rcpt or ["a@b.test"], raw)


def test_smtp_message_is_stored_and_readable_by_its_workspace_only(
    db: Database,
    smtp_server: capture.CaptureServer,
    client: TestClient,
    workspaces: tuple[NewWorkspace, NewWorkspace],
) -> None:
    acme, globex = workspaces
    send(
        smtp_server,
        message("Ann <ann@customer.test>", "Grüße aus Köln", acme.workspace_id),
        rcpt=["ann@customer.test", "bcc@customer.test"],
    )

    with db.system() as session:
        row = session.scalars(select(CapturedMessage)).one()
    assert row.workspace_id == acme.workspace_id
    assert row.mail_from == "news@postwise.test"
    assert row.rcpt_to == ["ann@customer.test", "bcc@customer.test"]
    assert row.subject == "Grüße aus Köln"
    assert b"Subject: =?utf-8?" in row.raw  # stored as sent: RFC 2047 on the wire

    listing = client.get("/api/captured-messages", headers=auth(acme.api_key))
    assert listing.status_code == 200
    body = listing.json()
    assert [m["subject"] for m in body["data"]] == ["Grüße aus Köln"]
    assert body["next_cursor"] is None

    detail = client.get(f"/api/captured-messages/{row.id}", headers=auth(acme.api_key)).json()
    assert detail["text"] == "Plain body\n"
    assert detail["html"] == "<p>HTML body</p>\n"
    assert {"name": "Subject", "value": "Grüße aus Köln"} in detail["headers"]

    raw = client.get(f"/api/captured-messages/{row.id}/raw", headers=auth(acme.api_key))
    assert raw.headers["content-type"] == "message/rfc822"
    assert raw.content == row.raw

    other = auth(globex.api_key)
    assert client.get("/api/captured-messages", headers=other).json()["data"] == []
    for path in (f"/api/captured-messages/{row.id}", f"/api/captured-messages/{row.id}/raw"):
        missing = client.get(path, headers=other)
        assert missing.status_code == 404
        assert missing.json()["code"] == "not_found"


def test_a_message_without_a_usable_workspace_header_belongs_to_no_one(
    db: Database, smtp_server: capture.CaptureServer, workspaces: tuple[NewWorkspace, NewWorkspace]
) -> None:
    send(smtp_server, message("a@b.test", "no header"))
    send(smtp_server, message("a@b.test", "not a number", "acme"))
    send(smtp_server, message("a@b.test", "no such workspace", 999_999))
    with db.system() as session:
        rows = session.execute(select(CapturedMessage.subject, CapturedMessage.workspace_id)).all()
    assert sorted(tuple(r) for r in rows) == [
        ("no header", None),
        ("no such workspace", None),
        ("not a number", None),
    ]


def test_stored_fields_survive_hostile_input(db: Database) -> None:
    long_subject = "Subject: " + "x" * 3000 + "\r\n"
    row = raw_store(
        db,
        (long_subject + "X-Postwise-Workspace: 99999999999999999999999\r\n\r\nbody\r\n").encode(),
        rcpt=["nul\x00@b.test"],
    )
    assert len(row.subject) == 1000
    assert row.workspace_id is None
    assert row.rcpt_to == ["nul@b.test"]


def test_listing_pages_newest_first_and_filters_by_recipient(
    db: Database, client: TestClient, workspaces: tuple[NewWorkspace, NewWorkspace]
) -> None:
    acme = workspaces[0]
    for n in range(5):
        to = "Ann@Customer.test" if n % 2 == 0 else "bob@customer.test"
        raw = f"X-Postwise-Workspace: {acme.workspace_id}\r\nSubject: m{n}\r\n\r\nx\r\n"
        raw_store(db, raw.encode(), rcpt=[to, "cc@customer.test"])

    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/captured-messages", params=params, headers=auth(acme.api_key))
        body = page.json()
        seen += [m["subject"] for m in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ["m4", "m3", "m2", "m1", "m0"]

    filtered = client.get(
        "/api/captured-messages", params={"to": "ann@customer.TEST"}, headers=auth(acme.api_key)
    )
    assert [m["subject"] for m in filtered.json()["data"]] == ["m4", "m2", "m0"]


def test_reading_captured_mail_needs_the_admin_scope(
    db: Database, client: TestClient, workspaces: tuple[NewWorkspace, NewWorkspace]
) -> None:
    with db.system() as session:
        reader = create_api_key(session, workspaces[0].workspace_id, ["contacts:read"])
    response = client.get("/api/captured-messages", headers=auth(reader.key))
    assert response.status_code == 403
    assert response.json()["code"] == "missing_scope"
    assert client.get("/api/captured-messages").status_code == 401


def test_bad_cursor_is_a_clear_error(
    client: TestClient, workspaces: tuple[NewWorkspace, NewWorkspace]
) -> None:
    response = client.get(
        "/api/captured-messages", params={"cursor": "nonsense"}, headers=auth(workspaces[0].api_key)
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_cursor"


def test_out_of_range_ids_are_client_errors(
    client: TestClient, workspaces: tuple[NewWorkspace, NewWorkspace]
) -> None:
    key = auth(workspaces[0].api_key)
    assert client.get(f"/api/captured-messages/{2**70}", headers=key).status_code == 422
    huge = encode_cursor(2**70)
    listing = client.get("/api/captured-messages", params={"cursor": huge}, headers=key)
    assert listing.status_code == 400
    assert listing.json()["code"] == "invalid_cursor"
    nul = client.get("/api/captured-messages", params={"to": "a\x00@b.test"}, headers=key)
    assert nul.status_code == 422


def test_parse_lists_attachments_and_falls_back_on_unknown_charsets() -> None:
    msg = message("a@b.test", "files")
    msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="q.pdf")
    parsed = capture.parse(msg.as_bytes())
    assert parsed.text == "Plain body\n"
    assert [(a.filename, a.content_type, a.size) for a in parsed.attachments] == [
        ("q.pdf", "application/pdf", 8)
    ]

    odd = b"Subject: x\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\ncaf\xc3\xa9\r\n"
    assert capture.parse(odd).text == "café\n"
