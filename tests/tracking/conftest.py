"""The /v1 tracking API on the migrated test database of each backend: two workspaces,
each with its tracking write key, and a client that sends a key the way Segment's
libraries do (HTTP Basic user name, empty password)."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from postwise.api.app import create_app
from postwise.core.settings import Settings
from postwise.storage.database import Database
from postwise.storage.tables import Event
from postwise.workspaces.actions import NewWorkspace, create_workspace


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


class Tracker:
    """Posts Segment calls with one write key."""

    def __init__(self, client: TestClient, key: str) -> None:
        self.client = client
        self.key = key

    def post(
        self, path: str, body: Any, *, compress: bool = False, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        raw = json.dumps(body).encode() if not isinstance(body, bytes) else body
        sent = {"Content-Type": "application/json", **basic(self.key), **(headers or {})}
        if compress:
            raw = gzip.compress(raw)
            sent["Content-Encoding"] = "gzip"
        return self.client.post(path, content=raw, headers=sent)

    def batch(self, *calls: dict[str, Any], **extra: Any) -> httpx.Response:
        return self.post("/v1/batch", {"batch": list(calls), **extra})


def events(db: Database, workspace_id: int) -> list[Event]:
    with db.tenant(workspace_id) as s:
        return list(s.scalars(select(Event).order_by(Event.id)))


@pytest.fixture
def make_app(db: Database, tmp_path: Path) -> Any:
    def build(**overrides: Any) -> FastAPI:
        settings = Settings(environment="test", data_dir=tmp_path, database_url=db.url, **overrides)
        return create_app(settings, db)

    return build


@pytest.fixture
def client(make_app: Any) -> Iterator[TestClient]:
    with TestClient(make_app()) as c:
        yield c


@pytest.fixture
def acme(db: Database) -> NewWorkspace:
    with db.system() as s:
        return create_workspace(s, "Acme")


@pytest.fixture
def zebra(db: Database) -> NewWorkspace:
    with db.system() as s:
        return create_workspace(s, "Zebra")


@pytest.fixture
def tracker(client: TestClient, acme: NewWorkspace) -> Tracker:
    return Tracker(client, acme.write_key)
