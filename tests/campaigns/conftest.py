"""A workspace ready for campaigns: contacts (some senior), a segment, a list, a template,
a verified sending domain, and settings the delivery pipeline and campaigns both read."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from postwise.campaigns import lifecycle
from postwise.contacts import lists
from postwise.contacts.actions import upsert_contacts
from postwise.core.settings import Settings, get_settings
from postwise.delivery import service
from postwise.jobs.runner import Worker
from postwise.messages import keys
from postwise.messages import store as templates
from postwise.segments import membership
from postwise.segments import store as segments
from postwise.storage.database import Database
from postwise.workspaces.actions import create_workspace

SECRET = "campaign-test-secret"
SENIOR = {"field": "contact.seniority", "op": "in", "value": ["director", "vp"]}


@dataclass
class World:
    ws: int
    other_ws: int
    segment_id: int
    list_id: int
    template_id: int
    contacts: dict[str, int] = field(default_factory=dict)
    write_key: str = ""
    api_key: str = ""
    other_api_key: str = ""


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    s = Settings(
        data_dir=tmp_path,
        secret_key=SECRET,
        delivery_from_address="news@send.example",
        delivery_bounce_domain="bounce.send.example",
        delivery_postal_address="1 Main St, Springfield",
        delivery_other_per_minute=60_000,
        delivery_other_connections=10,
        campaign_guardrail_min_sample=10,
    )
    monkeypatch.setattr(service, "get_settings", lambda: s)
    monkeypatch.setattr(lifecycle, "get_settings", lambda: s)
    from postwise.campaigns import fanout, guardrails, jobs, results

    for module in (guardrails, jobs, results):
        monkeypatch.setattr(module, "get_settings", lambda: s)
    del fanout
    return s


def people(n: int) -> list[dict[str, object]]:
    zones = ["Europe/Paris", "America/New_York", None]
    return [
        {
            "email": f"p{i:03d}@corp{i % 3}.example",
            "seniority": "director" if i % 2 == 0 else "entry",
            "timezone": zones[i % 3],
        }
        for i in range(n)
    ]


def make_world(db: Database, n: int = 12) -> World:
    with db.system() as s:
        acme = create_workspace(s, "Acme")
        other_ws = create_workspace(s, "Other")
        ws, other = acme.workspace_id, other_ws.workspace_id
    with db.tenant(ws) as s:
        rows = people(n)
        results = upsert_contacts(s, rows, source="api")
        contacts = {
            str(r["email"]): int(res.contact_id or 0) for r, res in zip(rows, results, strict=True)
        }
        news = lists.create_list(s, {"name": "News"})
        for email, cid in contacts.items():
            if int(email[1:4]) % 3 == 0:  # every third person is on the list
                lists.subscribe(s, news.id, cid, lists.ConsentInput("api"), confirmed=True)
        segment = segments.create_segment(
            s, segments.SegmentInput("Seniors", SENIOR), refresh=False
        )
        membership.refresh(s, segment.id)
        template = templates.create_template(
            s,
            templates.TemplateInput(
                name="Launch",
                subject="Hello {{ contact.first_name | default('there') }}",
                html='<html><body><p>News</p><a href="https://shop.example/new">See</a></body></html>',
                text="News https://shop.example/new",
            ),
        )
        keys.generate_dkim_key(s, SECRET.encode(), domain="send.example", selector="s1")
        return World(
            ws,
            other,
            segment.id,
            news.id,
            template.id,
            contacts,
            write_key=acme.write_key,
            api_key=acme.api_key,
            other_api_key=other_ws.api_key,
        )


@pytest.fixture
def world(db: Database, settings: Settings) -> World:
    return make_world(db)


def drain(db: Database) -> None:
    Worker(db, worker_id="campaign-test-worker").run_until_idle()


def base_campaign(world: World, **extra: object) -> dict[str, object]:
    return {
        "key": "launch",
        "name": "Launch",
        "template_id": world.template_id,
        "sending_domain": "send.example",
        "from_name": "Acme",
        "from_address": "news@send.example",
        "audience": {"sources": [{"segment": world.segment_id}, {"list": world.list_id}]},
        **extra,
    }


@pytest.fixture
def cli_runner(
    db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[CliRunner]:
    monkeypatch.setenv("POSTWISE_DATABASE_URL", db.url)
    monkeypatch.setenv("POSTWISE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("POSTWISE_SECRET_KEY", SECRET)
    monkeypatch.setenv("POSTWISE_DELIVERY_POSTAL_ADDRESS", "1 Main St, Springfield")
    get_settings.cache_clear()
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield CliRunner()
    finally:  # commands log onto CliRunner's closed stream: restore (as tests/cli does)
        get_settings.cache_clear()
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)
