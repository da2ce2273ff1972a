"""``postwise suppress`` and ``postwise contact export|erase`` end to end.

The contact commands are tested on a group of their own: ``cli/main.py`` attaches them to
``postwise contact`` with the same ``register_contact_commands`` call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import typer
from typer.testing import CliRunner

from postwise.cli import privacy
from postwise.cli.main import app
from postwise.core.settings import get_settings
from postwise.storage.database import Database
from postwise.workspaces.actions import NewWorkspace
from tests.privacy.conftest import ADA, NEEDLES, find_anywhere, seed


@pytest.fixture
def runner(db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CliRunner]:
    monkeypatch.setenv("POSTWISE_DATABASE_URL", db.url)
    monkeypatch.setenv("POSTWISE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("POSTWISE_SECRET_KEY", "cli-test-secret")
    get_settings.cache_clear()
    handlers = list(logging.getLogger().handlers)
    yield CliRunner()
    get_settings.cache_clear()
    # The CLI configured logging onto the runner's streams, which are closed now.
    structlog.reset_defaults()
    for handler in logging.getLogger().handlers:
        if handler not in handlers:
            logging.getLogger().removeHandler(handler)


def test_suppress_add_check_list_remove(
    runner: CliRunner, workspaces: tuple[NewWorkspace, NewWorkspace]
) -> None:
    ws = str(workspaces[0].workspace_id)
    added = runner.invoke(app, ["suppress", "add", "--domain", "corp.example", "-w", ws])
    assert added.exit_code == 0, added.output
    runner.invoke(app, ["suppress", "add", "ann@else.example", "-w", ws, "--reason", "bounced"])
    check = runner.invoke(app, ["suppress", "check", "x@eu.corp.example", "-w", ws, "--json"])
    assert json.loads(check.stdout)["kind"] == "domain"
    listing = json.loads(runner.invoke(app, ["suppress", "list", "-w", ws, "--json"]).stdout)
    assert [(r["kind"], r["value"]) for r in listing["data"]] == [
        ("domain", "corp.example"),
        ("address", "ann@else.example"),
    ]
    domain_id = str(listing["data"][0]["id"])
    assert runner.invoke(app, ["suppress", "remove", domain_id, "-w", ws]).exit_code == 0
    check = runner.invoke(app, ["suppress", "check", "x@eu.corp.example", "-w", ws])
    assert "is not suppressed" in check.stdout
    bad = runner.invoke(app, ["suppress", "add", "a@b.example", "-w", ws, "--reason", "erased"])
    assert bad.exit_code == 2 and "reason must be one of" in bad.output


def test_contact_export_and_erase(
    db: Database,
    runner: CliRunner,
    workspaces: tuple[NewWorkspace, NewWorkspace],
    tmp_path: Path,
) -> None:
    a, b = workspaces
    seed(db, a.workspace_id, b.workspace_id)
    ws = str(a.workspace_id)
    contact = typer.Typer()
    privacy.register_contact_commands(contact)
    target = tmp_path / "ada.json"
    exported = runner.invoke(contact, ["export", ADA, "-w", ws, "-o", str(target)])
    assert exported.exit_code == 0, exported.output
    assert json.loads(target.read_text())["contact"]["email"] == ADA

    declined = runner.invoke(contact, ["erase", ADA, "-w", ws], input="n\n")
    assert declined.exit_code != 0
    assert find_anywhere(db, a.workspace_id, NEEDLES)

    erased = runner.invoke(contact, ["erase", ADA, "-w", ws, "--yes", "--json"])
    assert erased.exit_code == 0, erased.output
    receipt = json.loads(erased.stdout)
    assert receipt["deleted"]["contacts"] == 1 and receipt["requested_by"].startswith("cli")
    assert find_anywhere(db, a.workspace_id, NEEDLES) == []
    check = runner.invoke(app, ["suppress", "check", ADA, "-w", ws, "--json"])
    assert json.loads(check.stdout)["kind"] == "address_hash"
    missing = runner.invoke(contact, ["export", ADA, "-w", ws])
    assert missing.exit_code == 2
