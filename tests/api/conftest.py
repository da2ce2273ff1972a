"""The API under test: ``create_app`` on the migrated test database of each backend,
driven through Starlette's TestClient (no server, no lifespan: nothing starts in the
background)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from postwise.api.app import create_app
from postwise.core.settings import Settings
from postwise.storage.database import Database
from postwise.workspaces.actions import NewWorkspace, create_workspace

AppFactory = Callable[..., FastAPI]
ClientFactory = Callable[[FastAPI, str | None], TestClient]


@pytest.fixture
def make_app(db: Database, tmp_path: Path) -> AppFactory:
    """An app on ``db``; keyword arguments override settings (limits, mostly)."""

    def build(**overrides: object) -> FastAPI:
        settings = Settings(environment="test", data_dir=tmp_path, database_url=db.url, **overrides)
        return create_app(settings, db)

    return build


@pytest.fixture
def app(make_app: AppFactory) -> FastAPI:
    return make_app()


@pytest.fixture
def make_client() -> Iterator[ClientFactory]:
    clients: list[TestClient] = []

    def build(app: FastAPI, key: str | None) -> TestClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        client = TestClient(app, headers=headers)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def workspace(db: Database) -> NewWorkspace:
    with db.system() as s:
        return create_workspace(s, "Acme")


@pytest.fixture
def api(app: FastAPI, workspace: NewWorkspace, make_client: ClientFactory) -> TestClient:
    """A client holding the admin key of workspace "Acme"."""
    return make_client(app, workspace.api_key)
