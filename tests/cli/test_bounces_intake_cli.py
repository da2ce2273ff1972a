"""``postwise bounces list|summary|alerts|read-maildir|poll-imap`` and ``postwise inbound``,
run as commands against the test database (both backends)."""

from __future__ import annotations

import json
import mailbox
import os
import re
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postwise.bounces import intake
from postwise.cli.main import app
from postwise.core import clock
from postwise.storage.database import Database
from tests.bounces.dovecot_peer import PASSWORD, USER, DovecotInstance, dovecot  # noqa: F401
from tests.bounces.scenario import SECRET, audience, context, dsn, hard, minutes_after, verp


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI must verify the VERP tokens the scenario signs."""
    monkeypatch.setenv("POSTWISE_SECRET_KEY", SECRET.decode())


def test_read_maildir_then_list_summary_and_alerts(
    runner: CliRunner, db: Database, tmp_path: Path
) -> None:
    emails = [f"p{i}@bigcorp.example" for i in range(6)]
    people = audience(db, emails)
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    box.add(dsn(emails[0], return_path=verp(people.outbox[emails[0]])))
    result = runner.invoke(app, ["bounces", "read-maildir", str(tmp_path / "Maildir")])
    assert result.exit_code == 0, result.output
    assert "1 read, 1 stored" in result.output and "1 bounce/complaint records" in result.output
    assert (
        "0 read"
        in runner.invoke(app, ["bounces", "read-maildir", str(tmp_path / "Maildir")]).output
    )

    ws = str(people.workspace_id)
    listed = runner.invoke(app, ["bounces", "list", "-w", ws, "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)["data"]
    assert [(r["email"], r["source"], r["reason"], r["verdict"]) for r in rows] == [
        (emails[0], "maildir", "userunknown", "suppressed")
    ]
    wide = {"COLUMNS": "200"}
    table = runner.invoke(
        app, ["bounces", "list", "-w", ws, "--domain", "bigcorp.example"], env=wide
    )
    assert emails[0] in table.output and "suppressed" in table.output

    # A burst at the company: the summary marks it, and an alert explains.
    ctx = context(db, burst_min=3, burst_ratio=0.5)
    start = clock.utcnow()
    for i, email in enumerate(emails[1:4]):
        intake.record_parsed(
            ctx, hard(email), raw=b"", source="smtp",
            envelope=intake.Envelope("", (verp(people.outbox[email]),)),
            now=minutes_after(start, i),
        )  # fmt: skip
    summary = json.loads(runner.invoke(app, ["bounces", "summary", "-w", ws, "--json"]).output)
    assert summary[0]["domain"] == "bigcorp.example" and summary[0]["blocked"] is True
    assert summary[0]["hard"] == 4 and summary[0]["kept_filter_block"] == 4
    assert "BLOCKING" in runner.invoke(app, ["bounces", "summary", "-w", ws], env=wide).output
    alerts = json.loads(runner.invoke(app, ["bounces", "alerts", "-w", ws, "--json"]).output)
    assert len(alerts) == 1 and "bigcorp.example" in alerts[0]["message"]
    acked = runner.invoke(app, ["bounces", "alerts", "-w", ws, "--ack", str(alerts[0]["id"])])
    assert acked.exit_code == 0 and "no alerts" in acked.output
    missing = runner.invoke(app, ["bounces", "alerts", "-w", ws, "--ack", "999999"])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_poll_imap_reads_the_configured_mailbox(
    runner: CliRunner,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
    dovecot: DovecotInstance,  # noqa: F811
) -> None:
    unset = runner.invoke(app, ["bounces", "poll-imap"])
    assert unset.exit_code == 2 and "POSTWISE_BOUNCE_IMAP_HOST" in unset.output
    people = audience(db, ["ann@corp.example"])
    dovecot.append(dsn("ann@corp.example", return_path=verp(people.outbox["ann@corp.example"])))
    for name, value in {
        "HOST": "127.0.0.1",
        "PORT": str(dovecot.port),
        "TLS": "none",
        "USERNAME": USER,
        "PASSWORD": PASSWORD,
    }.items():
        monkeypatch.setenv(f"POSTWISE_BOUNCE_IMAP_{name}", value)
    from postwise.core.settings import get_settings

    get_settings.cache_clear()
    result = runner.invoke(app, ["bounces", "poll-imap"])
    assert result.exit_code == 0, result.output
    assert "1 read, 1 stored" in result.output
    monkeypatch.setenv("POSTWISE_BOUNCE_IMAP_PASSWORD", "wrong")
    get_settings.cache_clear()
    refused = runner.invoke(app, ["bounces", "poll-imap"])
    assert refused.exit_code == 1 and "IMAP 127.0.0.1" in refused.output


def test_postwise_inbound_receives_over_smtp_and_stops_on_sigint(
    db: Database, tmp_path: Path
) -> None:
    people = audience(db, ["ann@corp.example"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWISE_")}
    env |= {
        "POSTWISE_DATABASE_URL": db.url,
        "POSTWISE_DATA_DIR": str(tmp_path),
        "POSTWISE_SECRET_KEY": SECRET.decode(),
        "POSTWISE_DELIVERY_BOUNCE_DOMAIN": "bounce.sender.example",
        "POSTWISE_ENVIRONMENT": "test",
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "postwise.cli.main", "inbound", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline, port = time.monotonic() + 30, None
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            found = re.search(r"smtp://127\.0\.0\.1:(\d+)", line)
            port = int(found.group(1)) if found else None
        assert port, "postwise inbound did not report its port"
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            rcpt = verp(people.outbox["ann@corp.example"])
            assert client.sendmail("", [rcpt], dsn("ann@corp.example")) == {}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with db.tenant(people.workspace_id) as s:
        from sqlalchemy import select

        from postwise.storage.tables import BounceRecord

        assert s.scalars(select(BounceRecord.email)).all() == ["ann@corp.example"]
