"""The official ``segment-analytics-python`` client against a real Postwise server.

uvicorn serves the app on a free loopback port in a thread; the client sends its queued
calls to ``HOST/v1/batch`` as it does to Segment (Basic auth, optional gzip), and the
test flushes it and reads the database.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from segment.analytics.client import Client
from sqlalchemy import select

from postwise.api.app import create_app
from postwise.core.settings import Settings
from postwise.storage.database import Database
from postwise.storage.tables import Company, Contact, Event
from postwise.workspaces.actions import NewWorkspace


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(db: Database, tmp_path: Path) -> Iterator[str]:
    settings = Settings(environment="test", data_dir=tmp_path, database_url=db.url)
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings, db), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_segment_client_calls_land_as_contacts_companies_and_events(
    server: str, db: Database, acme: NewWorkspace, compress: bool
) -> None:
    failures: list[Any] = []
    client = Client(
        acme.write_key,
        host=server,
        gzip=compress,
        on_error=lambda exc, batch: failures.append((exc, batch)),
        max_retries=1,
    )
    client.page(anonymous_id="visitor-1", name="Pricing", properties={"url": "https://acme.test/p"})
    client.track(
        anonymous_id="visitor-1", event="Lead Magnet Downloaded", properties={"ebook": "x"}
    )
    client.identify(
        "user-1",
        {"email": "pat@initech.test", "firstName": "Pat", "title": "Head of Ops"},
        anonymous_id="visitor-1",
    )
    client.group("user-1", "initech.test", {"name": "Initech", "employees": 300})
    client.alias("visitor-2", "user-1")
    client.track("user-1", "Trial Started", {"plan": "pro"})
    client.flush()
    client.shutdown()
    assert failures == []

    with db.tenant(acme.workspace_id) as s:
        pat = s.scalar(select(Contact).where(Contact.email == "pat@initech.test"))
        assert pat is not None
        assert (pat.external_id, pat.first_name, pat.job_title) == ("user-1", "Pat", "Head of Ops")
        company = s.scalar(select(Company).where(Company.domain == "initech.test"))
        assert company is not None and company.name == "Initech"
        assert pat.company_id == company.id
        stored = [
            (e.type, e.name, e.contact_id) for e in s.scalars(select(Event).order_by(Event.id))
        ]
    assert stored == [
        ("page", "Page Viewed", pat.id),
        ("track", "Lead Magnet Downloaded", pat.id),
        ("identify", "Identify", pat.id),
        ("group", "Group", pat.id),
        ("alias", "Alias", pat.id),
        ("track", "Trial Started", pat.id),
    ]
    with db.tenant(acme.workspace_id) as s:
        event = s.scalars(select(Event).where(Event.name == "Trial Started")).one()
        assert event.context["library"]["name"] == "analytics-python"
        assert event.sent_at is not None and event.message_id
