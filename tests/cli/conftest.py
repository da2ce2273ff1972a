"""A CLI runner against the test database, leaving global logging as it found it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from postwise.core.settings import get_settings
from postwise.storage.database import Database


@pytest.fixture
def runner(db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CliRunner]:
    """Commands read settings from the environment (cached: cleared on both sides).

    Commands configure logging onto the stderr they see, which under CliRunner is a
    stream closed after each call; the earlier configuration is restored afterwards so
    later tests do not log into a closed file.
    """
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
