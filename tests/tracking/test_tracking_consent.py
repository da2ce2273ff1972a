"""Tracking consent in real sends: a list send through the outbox, the job worker and the
capture maildir carries the open pixel and /c/ links exactly for the contacts
``tracking.consent`` allows, and the links of a tracked message redirect and record."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from postwise.api.app import create_app
from postwise.cli import main
from postwise.contacts import actions, lists
from postwise.contacts.attributes import define_attribute
from postwise.core import clock
from postwise.core.settings import Settings, get_settings
from postwise.delivery import service
from postwise.delivery.transports.maildir import list_captured, read_captured
from postwise.jobs.runner import Worker
from postwise.storage.database import Database
from postwise.storage.tables import Event, OutboxMessage, Workspace
from postwise.tracking import consent
from postwise.workspaces.actions import create_workspace

BASE = "https://t.send.example"
TEMPLATE = {
    "subject": "News",
    "html": "<html><body><p>New</p><a href='https://shop.example/spring'>Shop</a></body></html>",
    "text": "New: https://shop.example/spring",
}
PEOPLE = ("plain@corp.example", "objects@corp.example", "opted-in@corp.example")
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0"


@pytest.mark.parametrize(
    ("setting", "choice", "has_contact", "expected"),
    [
        (None, None, True, True),  # default: legitimate interest
        ("on", None, True, True),
        ("on", False, True, False),  # an objection always wins
        ("on", True, True, True),
        ("on", None, False, True),
        ("consent", None, True, False),
        ("consent", True, True, True),
        ("consent", False, True, False),
        ("consent", None, False, False),
        ("off", True, True, False),
        ("nonsense", None, True, False),  # an unknown mode is the safe one
    ],
)
def test_the_rule(
    setting: str | None, choice: bool | None, has_contact: bool, expected: bool
) -> None:
    workspace = {} if setting is None else {"tracking": setting}
    attributes = {} if choice is None else {"email_tracking": choice}
    assert consent.allowed(workspace, attributes, has_contact=has_contact) is expected


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    s = Settings(
        environment="test",
        data_dir=tmp_path,
        secret_key="consent-test-secret",
        base_url=BASE,
        delivery_from_address="news@send.example",
        delivery_bounce_domain="bounce.send.example",
        delivery_postal_address="1 Main St, Springfield",
        delivery_other_per_minute=60_000,
        delivery_other_connections=10,
    )
    monkeypatch.setattr(service, "get_settings", lambda: s)
    return s


def send_to_all(db: Database, settings: Settings, mode: str | None) -> tuple[int, dict[str, str]]:
    """A workspace in ``mode``, three subscribers (no choice, objected, opted in), one list
    send drained by the worker; the captured text of each message by address."""
    with db.system() as s:
        ws = create_workspace(s, "Acme").workspace_id
        if mode is not None:
            workspace = s.get(Workspace, ws)
            assert workspace is not None
            workspace.settings = {**workspace.settings, "tracking": mode}
    with db.tenant(ws) as s:
        define_attribute(s, "contact", "email_tracking", "boolean")
        news = lists.create_list(s, {"name": "News"})
        for email, choice in zip(PEOPLE, (None, False, True), strict=True):
            fields: dict[str, object] = {"email": email}
            if choice is not None:
                fields["attributes"] = {"email_tracking": choice}
            contact, _ = actions.upsert_contact(s, fields, source="api")
            lists.subscribe(s, news.id, contact.id, lists.ConsentInput("api"), confirmed=True)
        assert service.send_to_list(s, news.id, template=TEMPLATE, campaign_key="spring") == 3
    Worker(db, worker_id="test-worker").run_until_idle()
    texts: dict[str, str] = {}
    for captured in list_captured(settings.resolved_capture_dir(), ws):
        raw = read_captured(settings.resolved_capture_dir(), ws, captured.name)
        message = BytesParser(policy=policy.default).parsebytes(raw)
        parts = [p.get_content() for p in message.walk() if p.get_content_maintype() == "text"]
        texts[message["To"].addresses[0].addr_spec] = "\n".join(parts)
    assert sorted(texts) == sorted(PEOPLE)
    return ws, texts


def is_tracked(text: str) -> bool:
    pixel = re.search(rf"{re.escape(BASE)}/o/[0-9a-f]+", text) is not None
    links = re.findall(rf"{re.escape(BASE)}/c/[0-9a-f]+", text)
    assert pixel == bool(links), "the pixel and the links go together"
    if not links:
        assert "https://shop.example/spring" in text  # the original link, untouched
    return bool(links)


def test_by_default_everyone_is_tracked_except_who_objected(
    db: Database, settings: Settings
) -> None:
    ws, texts = send_to_all(db, settings, None)
    assert {e: is_tracked(t) for e, t in texts.items()} == {
        "plain@corp.example": True,
        "objects@corp.example": False,
        "opted-in@corp.example": True,
    }
    with db.tenant(ws) as s:
        links = {r.email: r.links for r in s.scalars(select(OutboxMessage))}
    assert links["plain@corp.example"] == ["https://shop.example/spring"]
    assert not links["objects@corp.example"]


def test_consent_mode_tracks_only_who_opted_in(db: Database, settings: Settings) -> None:
    _, texts = send_to_all(db, settings, "consent")
    assert [e for e, t in texts.items() if is_tracked(t)] == ["opted-in@corp.example"]


def test_off_tracks_nobody(db: Database, settings: Settings) -> None:
    _, texts = send_to_all(db, settings, "off")
    assert not any(is_tracked(t) for t in texts.values())


def test_a_tracked_link_of_a_real_send_redirects_and_records_a_human_click(
    db: Database, settings: Settings
) -> None:
    ws, texts = send_to_all(db, settings, None)
    [click] = set(re.findall(rf"{re.escape(BASE)}(/c/[0-9a-f]+)", texts["plain@corp.example"]))
    with db.tenant(ws) as s:  # read an hour later, so the timing rule does not apply
        s.execute(update(OutboxMessage).values(sent_at=clock.utcnow() - timedelta(hours=1)))
    app = create_app(settings.model_copy(update={"database_url": db.url}), db)
    with TestClient(app, follow_redirects=False, client=("81.2.69.142", 40000)) as c:
        r = c.get(click, headers={"User-Agent": BROWSER})
    assert (r.status_code, r.headers["location"]) == (302, "https://shop.example/spring")
    with db.tenant(ws) as s:
        [event] = s.scalars(select(Event).where(Event.name == "Email Clicked")).all()
    assert event.properties["url"] == "https://shop.example/spring"
    assert (event.properties["machine"], event.properties["machine_reason"]) == (False, None)


@pytest.fixture
def cli(db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CliRunner]:
    """The CLI against the test database (as tests/cli/conftest.py), logging restored."""
    monkeypatch.setenv("POSTWISE_DATABASE_URL", db.url)
    monkeypatch.setenv("POSTWISE_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield CliRunner()
    finally:
        get_settings.cache_clear()
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)


def test_the_cli_shows_and_sets_the_mode_and_refuses_others(db: Database, cli: CliRunner) -> None:
    with db.system() as s:
        ws = str(create_workspace(s, "Acme").workspace_id)
    shown = cli.invoke(main.app, ["workspace", "tracking", "-w", ws])
    assert (shown.exit_code, shown.stdout.strip()) == (0, f"workspace {ws}: tracking on")
    assert cli.invoke(main.app, ["workspace", "tracking", "consent", "-w", ws]).exit_code == 0
    with db.system() as s:
        assert consent.mode_of(s, int(ws)) == "consent"
        workspace = s.get(Workspace, int(ws))
        assert workspace is not None and workspace.settings["tracking"] == "consent"
    refused = cli.invoke(main.app, ["workspace", "tracking", "sometimes", "-w", ws])
    assert refused.exit_code == 2 and "on, consent, off" in refused.output
    assert cli.invoke(main.app, ["workspace", "tracking", "-w", "999999"]).exit_code == 2
