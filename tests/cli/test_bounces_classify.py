"""``postwise bounces classify``: a table, or one JSON line per recipient, no database."""

from __future__ import annotations

import json
import time
from pathlib import Path

from typer.testing import CliRunner

from postwise.cli.main import app

DSN = (
    b"From: MAILER-DAEMON@mx.example.net\r\n"
    b"To: bounces+abc123@bounce.example.com\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\n"
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\nI'm sorry.\r\n"
    b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
    b"Reporting-MTA: dns; mx.example.net\r\n\r\n"
    b"Final-Recipient: rfc822; gone@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    b"Diagnostic-Code: smtp; 550 5.1.1 <gone@example.org>: Recipient address rejected: "
    b"User unknown in virtual mailbox table\r\n\r\n"
    b"Final-Recipient: rfc822; full@example.org\r\nAction: delayed\r\nStatus: 4.2.2\r\n"
    b"Diagnostic-Code: smtp; 452 4.2.2 Mailbox full\r\n\r\n"
    b"--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    b"Return-Path: <bounces+abc123@bounce.example.com>\r\nMessage-ID: <m1@example.com>\r\n"
    b"--b--\r\n"
)
PLAIN = b"From: someone@example.com\r\nTo: me@example.com\r\nSubject: hello\r\n\r\nHi there.\r\n"

KEYS = {
    "file",
    "kind",
    "recipient",
    "status",
    "reply_code",
    "reason",
    "hard",
    "feedback_type",
    "diagnostic",
}


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_json_prints_one_object_per_recipient(tmp_path: Path) -> None:
    dsn = _write(tmp_path, "dsn.eml", DSN)
    plain = _write(tmp_path, "plain.eml", PLAIN)
    result = CliRunner().invoke(app, ["bounces", "classify", "--json", str(dsn), str(plain)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [set(r) for r in rows] == [KEYS, KEYS, KEYS]
    gone, full, ordinary = rows
    assert gone["file"] == str(dsn)
    assert (gone["kind"], gone["recipient"], gone["status"], gone["reply_code"]) == (
        "bounce",
        "gone@example.org",
        "5.1.1",
        550,
    )
    assert (gone["reason"], gone["hard"]) == ("userunknown", True)
    assert (full["recipient"], full["reason"], full["hard"]) == (
        "full@example.org",
        "mailboxfull",
        False,
    )
    # a message with no recipients still prints one line
    assert ordinary["kind"] == "not_bounce" and ordinary["recipient"] is None


def test_table_by_default(tmp_path: Path) -> None:
    dsn = _write(tmp_path, "dsn.eml", DSN)
    result = CliRunner().invoke(app, ["bounces", "classify", str(dsn)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "gone@example.org" in result.stdout
    assert "userunknown" in result.stdout and "mailboxfull" in result.stdout


def test_unreadable_file_is_reported_and_others_still_classified(tmp_path: Path) -> None:
    dsn = _write(tmp_path, "dsn.eml", DSN)
    result = CliRunner().invoke(
        app, ["bounces", "classify", "--json", str(tmp_path / "missing.eml"), str(dsn)]
    )
    assert result.exit_code == 1
    assert "missing.eml" in result.stderr
    assert len(result.stdout.splitlines()) == 2


def test_a_thousand_files_take_seconds(tmp_path: Path) -> None:
    paths = [str(_write(tmp_path, f"m{i}.eml", DSN if i % 2 else PLAIN)) for i in range(1000)]
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["bounces", "classify", "--json", *paths])
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 1500
    assert elapsed < 10, elapsed
