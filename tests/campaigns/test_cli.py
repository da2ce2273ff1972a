"""``postwise campaign ...`` through the real CLI parser against the test database."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from postwise.cli.main import app
from postwise.storage.database import Database

from .conftest import base_campaign, make_world


def test_create_estimate_schedule_pause_twice_resume_cancel(
    db: Database, cli_runner: CliRunner, tmp_path: Path
) -> None:
    world = make_world(db)
    path = tmp_path / "campaign.json"
    path.write_text(json.dumps(base_campaign(world)))
    w = ["-w", str(world.ws)]
    out = cli_runner.invoke(app, ["campaign", "create", str(path), *w])
    assert out.exit_code == 0 and "launch" in out.output, out.output
    out = cli_runner.invoke(app, ["campaign", "estimate", "launch", *w, "--json"])
    assert json.loads(out.output)["total"] == 8
    out = cli_runner.invoke(app, ["campaign", "schedule", "launch", *w])
    assert out.exit_code == 0 and "scheduled" in out.output, out.output
    out = cli_runner.invoke(app, ["campaign", "pause", "launch", *w])
    assert out.exit_code == 0 and "paused" in out.output
    out = cli_runner.invoke(app, ["campaign", "pause", "launch", *w])
    assert out.exit_code == 2 and "it is paused" in out.output
    assert cli_runner.invoke(app, ["campaign", "resume", "launch", *w]).exit_code == 0
    out = cli_runner.invoke(app, ["campaign", "test-send", "launch", "me@corp.example", *w])
    assert out.exit_code == 0 and "queued 1" in out.output
    assert cli_runner.invoke(app, ["campaign", "cancel", "launch", *w]).exit_code == 0
    out = cli_runner.invoke(app, ["campaign", "list", *w, "--json"])
    assert [c["status"] for c in json.loads(out.output)] == ["cancelled"]
    out = cli_runner.invoke(app, ["campaign", "show", "launch", *w])
    assert json.loads(out.output)["test_send_count"] == 1
    assert cli_runner.invoke(app, ["campaign", "attribute", *w]).exit_code == 0
    out = cli_runner.invoke(app, ["campaign", "show", "nope", *w])
    assert out.exit_code == 2
