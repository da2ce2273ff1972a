"""Shared pieces for the runtime tests: an API client and two workspaces with their keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from postwise.api.app import create_app
from postwise.core.settings import Settings
from postwise.storage.database import Database
from postwise.workspaces.actions import NewWorkspace, create_workspace


@pytest.fixture
def client(db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(environment="test"), db)) as test_client:
        yield test_client


@pytest.fixture
def workspaces(db: Database) -> tuple[NewWorkspace, NewWorkspace]:
    with db.system() as session:
        return create_workspace(session, "Acme"), create_workspace(session, "Globex")
