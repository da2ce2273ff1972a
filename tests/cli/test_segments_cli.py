"""``postwise segment ...`` through the real CLI parser against the test database."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postwise.cli.main import app
from postwise.contacts.actions import update_contact, upsert_contacts
from postwise.segments import playbooks
from postwise.storage.database import Database
from postwise.workspaces.actions import create_workspace

SENIOR = {"field": "contact.seniority", "op": "in", "value": ["director", "vp"]}


@pytest.fixture
def ws(db: Database) -> int:
    with db.system() as s:
        workspace = create_workspace(s, "Acme").workspace_id
    with db.tenant(workspace) as s:
        rows = [
            {"email": f"p{i:02}@acme.example", "seniority": "vp" if i % 3 == 0 else "entry"}
            for i in range(60)
        ]
        upsert_contacts(s, rows, source="api")
    return workspace


@pytest.fixture
def senior_file(tmp_path: Path) -> Path:
    path = tmp_path / "seniors.json"
    path.write_text(json.dumps(SENIOR))
    return path


def test_preview_json_is_one_object_with_count_sample_and_seconds(
    runner: CliRunner, ws: int, senior_file: Path
) -> None:
    result = runner.invoke(app, ["segment", "preview", str(senior_file), "-w", str(ws), "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert set(body) == {"count", "sample", "seconds"}
    assert body["count"] == 20
    assert body["sample"] == [f"p{i:02}@acme.example" for i in range(0, 60, 3)]
    assert isinstance(body["seconds"], float) and body["seconds"] >= 0


def test_preview_prints_a_table(runner: CliRunner, ws: int, senior_file: Path) -> None:
    result = runner.invoke(app, ["segment", "preview", str(senior_file), "-w", str(ws)])
    assert result.exit_code == 0, result.output
    assert "20 contacts" in result.stdout and "p57@acme.example" in result.stdout


def test_a_bad_definition_is_one_line_naming_the_path(
    runner: CliRunner, ws: int, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"all": [SENIOR, {"field": "contact.seniority", "op": "gt"}]}))
    result = runner.invoke(app, ["segment", "preview", str(bad), "-w", str(ws), "--json"])
    assert result.exit_code == 2
    assert "all[1]" in result.stderr and "Traceback" not in result.output
    not_json = tmp_path / "x.json"
    not_json.write_text("{")
    assert runner.invoke(app, ["segment", "validate", str(not_json), "-w", str(ws)]).exit_code == 2


def test_create_list_show_members_export_refresh_history(
    runner: CliRunner, db: Database, ws: int, senior_file: Path, tmp_path: Path
) -> None:
    w = ["-w", str(ws)]
    created = runner.invoke(app, ["segment", "create", str(senior_file), *w, "--name", "Seniors"])
    assert created.exit_code == 0, created.output
    assert "Seniors (20 members)" in created.stdout

    listed = json.loads(runner.invoke(app, ["segment", "list", *w, "--json"]).stdout)
    assert [(r["name"], r["members"]) for r in listed] == [("Seniors", 20)]
    shown = json.loads(runner.invoke(app, ["segment", "show", "Seniors", *w, "--json"]).stdout)
    assert shown["definition"] == SENIOR and "seniority" in shown["summary"]

    page = json.loads(
        runner.invoke(app, ["segment", "members", "Seniors", *w, "--limit", "5", "--json"]).stdout
    )
    assert [m["email"] for m in page["data"]] == [f"p{i:02}@acme.example" for i in range(0, 15, 3)]
    assert page["next_cursor"]

    out = tmp_path / "seniors.csv"
    exported = runner.invoke(app, ["segment", "export", "Seniors", *w, "-o", str(out)])
    assert exported.exit_code == 0, exported.output
    with out.open(newline="") as f:
        assert len(list(csv.DictReader(f))) == 20

    with db.tenant(ws) as s:
        rows = upsert_contacts(s, [{"email": "p00@acme.example"}], source="api")
        update_contact(s, rows[0].contact_id or 0, {"seniority": "entry"}, source="api")
    refreshed = json.loads(
        runner.invoke(app, ["segment", "refresh", "Seniors", *w, "--json"]).stdout
    )
    assert [(r["members"], r["exited"]) for r in refreshed] == [(19, 1)]
    history = runner.invoke(app, ["segment", "history", "p00@acme.example", *w, "--json"])
    [stay] = json.loads(history.stdout)
    assert stay["segment"] == "Seniors" and stay["exited_at"] is not None

    missing = runner.invoke(app, ["segment", "show", "Nope", *w])
    assert missing.exit_code == 2


def test_seed_playbooks(runner: CliRunner, ws: int) -> None:
    result = runner.invoke(app, ["segment", "seed-playbooks", "-w", str(ws)])
    assert result.exit_code == 0, result.output
    for book in playbooks.all_playbooks():
        assert book.name in result.stdout
    again = runner.invoke(app, ["segment", "seed-playbooks", "-w", str(ws)])
    assert "exist already" in again.stdout
    # Each playbook file is a definition file the CLI takes as it is.
    path = Path(playbooks.__file__).parent / "cart_abandoners.json"
    preview = runner.invoke(app, ["segment", "preview", str(path), "-w", str(ws), "--json"])
    assert preview.exit_code == 0 and json.loads(preview.stdout)["count"] == 0
