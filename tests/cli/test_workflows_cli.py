"""``postwise workflow ...`` through the real CLI parser against the test database."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from postwise.cli.main import app
from postwise.contacts.actions import upsert_contacts
from postwise.storage.database import Database
from postwise.workflows import jobs, runtime
from postwise.workspaces.actions import create_workspace


def test_install_show_enroll_history_metrics_pause_resume(
    db: Database, runner: CliRunner, tmp_path: Path
) -> None:
    runtime.forget_parsed()
    jobs.forget_interest()
    with db.system() as s:
        ws = create_workspace(s, "Acme").workspace_id
    with db.tenant(ws) as s:
        upsert_contacts(s, [{"email": "ann@corp.example"}], source="api")
    w = ["-w", str(ws)]
    out = runner.invoke(app, ["workflow", "install", "welcome", *w])
    assert out.exit_code == 0, out.output
    assert "installed welcome" in out.output
    out = runner.invoke(app, ["workflow", "show", "welcome", *w])
    assert out.exit_code == 0 and "welcome" in out.output and "Starts:" in out.output
    out = runner.invoke(app, ["workflow", "enroll", "welcome", "ann@corp.example", *w])
    assert out.exit_code == 0, out.output
    assert "now at wait_2d" in out.output
    out = runner.invoke(app, ["workflow", "enroll", "welcome", "ann@corp.example", *w])
    assert out.exit_code == 2 and "re-entry" in out.output  # once: refused, one line
    out = runner.invoke(app, ["workflow", "history", "ann@corp.example", *w, "--json"])
    [journey] = json.loads(out.output)
    first = journey["steps"][0]
    assert (first["step"], first["outcome"], first["template"]) == ("welcome", "sent", "welcome_1")
    assert journey["emails_sent"] == 1 and journey["current_step"] == "wait_2d"
    out = runner.invoke(app, ["workflow", "metrics", "welcome", *w, "--json"])
    m = json.loads(out.output)
    assert (m["enrolled"], m["active"], m["emails_sent"]) == (1, 1, 1)
    assert runner.invoke(app, ["workflow", "pause", "welcome", *w]).exit_code == 0
    out = runner.invoke(app, ["workflow", "list", *w, "--json"])
    assert json.loads(out.output)[0]["status"] == "paused"
    assert runner.invoke(app, ["workflow", "resume", "welcome", *w]).exit_code == 0
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "version": 1,
                "name": "x",
                "triggers": [{"type": "manual"}],
                "steps": [{"id": "s1", "type": "send_email", "template": "nope"}],
            }
        )
    )
    out = runner.invoke(app, ["workflow", "save", "broken", str(bad), *w])
    assert out.exit_code == 2 and "s1" in out.output


def test_webhook_secrets_random_once_rotated_and_listed_without_values(
    db: Database, runner: CliRunner
) -> None:
    from postwise.workflows import store

    with db.system() as s:
        ws = create_workspace(s, "Acme").workspace_id
    w = ["-w", str(ws)]
    out = runner.invoke(app, ["workflow", "secret", "sales", *w])
    assert out.exit_code == 0, out.output
    with db.tenant(ws) as s:
        first = store.webhook_secrets(s)["sales"]
    assert first in out.output and "shown once" in out.output
    again = runner.invoke(app, ["workflow", "secret", "sales", *w])
    assert again.exit_code == 2 and "rotate" in again.output
    out = runner.invoke(app, ["workflow", "secret", "sales", "--rotate", *w])
    with db.tenant(ws) as s:
        second = store.webhook_secrets(s)["sales"]
    assert out.exit_code == 0 and second != first and second in out.output
    assert runner.invoke(app, ["workflow", "secret", "ops", "o" * 20, *w]).exit_code == 0
    out = runner.invoke(app, ["workflow", "secrets", *w, "--json"])
    listed = json.loads(out.output)
    assert [r["name"] for r in listed] == ["ops", "sales"]
    assert second not in out.output and "o" * 20 not in out.output
