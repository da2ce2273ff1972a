"""``postwise contact`` and ``postwise attribute`` through the real command line parser."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import insert
from typer.testing import CliRunner

from postwise.cli.main import app
from postwise.contacts import lists
from postwise.contacts.actions import upsert_contacts
from postwise.contacts.attributes import define_attribute
from postwise.contacts.companies import upsert_company
from postwise.core.clock import utcnow
from postwise.storage.database import Database
from postwise.storage.tables import Event
from postwise.workspaces.actions import create_workspace


@pytest.fixture
def ws(db: Database) -> int:
    """One contact at a company, on a double-opt-in list, with two page views."""
    with db.system() as s:
        workspace_id = create_workspace(s, "Acme").workspace_id
    now = utcnow()
    with db.tenant(workspace_id) as s:
        define_attribute(s, "contact", "plan", "string")
        upsert_company(
            s,
            {"domain": "initech.com", "name": "Initech", "industry": "SaaS", "employee_count": 120},
        )
        [row] = upsert_contacts(
            s,
            [
                {
                    "email": "ann@initech.com",
                    "first_name": "Ann",
                    "job_title": "CMO",
                    "attributes": {"plan": "growth"},
                }
            ],
            source="api",
        )
        newsletter = lists.create_list(s, {"name": "Newsletter", "double_opt_in": True})
        consent = lists.ConsentInput("form", "192.0.2.10", "Yes, send me the newsletter")
        lists.subscribe(s, newsletter.id, row.contact_id or 0, consent)
        s.execute(
            insert(Event),
            [
                {
                    "workspace_id": workspace_id,
                    "contact_id": row.contact_id,
                    "type": "page",
                    "name": "Page Viewed",
                    "properties": {"path": path},
                    "context": {"page": {"path": path}},
                    "occurred_at": now - timedelta(hours=hours),
                }
                for path, hours in (("/pricing", 1), ("/docs", 5))
            ],
        )
    return workspace_id


def invoke(runner: CliRunner, *args: str | int) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_show_json_has_fields_attributes_company_lists_and_latest_events(
    runner: CliRunner, ws: int
) -> None:
    code, out, _ = invoke(runner, "contact", "show", "ann@INITECH.com", "--workspace", ws, "--json")
    assert code == 0
    document = json.loads(out)
    assert document["email"] == "ann@initech.com"
    assert document["first_name"] == "Ann" and document["job_title"] == "CMO"
    assert document["attributes"] == {"plan": "growth"}
    assert document["company"]["domain"] == "initech.com"
    assert document["company"]["size_band"] == "51-200"
    [membership] = document["lists"]
    assert membership["list"] == "Newsletter" and membership["status"] == "pending"
    assert membership["consent"]["ip"] == "192.0.2.10"
    assert [e["properties"]["path"] for e in document["latest_events"]] == ["/pricing", "/docs"]
    assert "timeline" not in document


def test_show_json_with_timeline_merges_changes_and_events(runner: CliRunner, ws: int) -> None:
    code, out, _ = invoke(
        runner,
        "contact",
        "show",
        "ann@initech.com",
        "-w",
        ws,
        "--timeline",
        "--events",
        "1",
        "--json",
    )
    assert code == 0
    document = json.loads(out)
    assert len(document["latest_events"]) == 1
    kinds = [
        (entry["kind"], entry.get("change") or entry.get("name")) for entry in document["timeline"]
    ]
    assert kinds.count(("event", "Page Viewed")) == 2
    assert ("change", "created") in kinds and ("change", "pending") in kinds
    times = [entry["at"] for entry in document["timeline"]]
    assert times == sorted(times, reverse=True)


def test_show_renders_tables_for_people(runner: CliRunner, ws: int) -> None:
    code, out, _ = invoke(runner, "contact", "show", "ann@initech.com", "-w", ws, "--timeline")
    assert code == 0
    for text in (
        "Ann <ann@initech.com>",
        "Initech",
        "Newsletter",
        "pending",
        "/pricing",
        "Timeline",
    ):
        assert text in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nobody@initech.com", "-w", "{ws}"), "no contact with email nobody@initech.com"),
        (("not-an-email", "-w", "{ws}"), "is not a valid email address"),
        (("ann@initech.com", "-w", "99999"), "workspace 99999 does not exist"),
    ],
)
def test_show_errors_exit_2_with_one_clear_line(
    runner: CliRunner, ws: int, args: tuple[str, ...], message: str
) -> None:
    code, out, err = invoke(runner, "contact", "show", *(a.format(ws=ws) for a in args), "--json")
    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and message in " ".join(err.split())
    assert "Traceback" not in err


def test_list_filters_and_pages(runner: CliRunner, ws: int, db: Database) -> None:
    with db.tenant(ws) as s:
        upsert_contacts(s, [{"email": f"p{i}@initech.com"} for i in range(3)], source="api")
    code, out, _ = invoke(runner, "contact", "list", "-w", ws, "--limit", "2", "--json")
    assert code == 0
    page = json.loads(out)
    assert [c["email"] for c in page["data"]] == ["ann@initech.com", "p0@initech.com"]
    assert page["next_cursor"]
    code, out, _ = invoke(
        runner, "contact", "list", "-w", ws, "--cursor", page["next_cursor"], "--json"
    )
    assert [c["email"] for c in json.loads(out)["data"]] == ["p1@initech.com", "p2@initech.com"]
    code, out, _ = invoke(runner, "contact", "list", "-w", ws, "--q", "ann", "--json")
    assert [c["email"] for c in json.loads(out)["data"]] == ["ann@initech.com"]
    code, out, _ = invoke(runner, "contact", "list", "-w", ws)
    assert code == 0 and "p2@initech.com" in out
    code, _, err = invoke(runner, "contact", "list", "-w", ws, "--status", "happy")
    assert code == 2 and "status must be one of" in err


def test_attributes_are_declared_and_listed(runner: CliRunner, ws: int) -> None:
    code, out, _ = invoke(
        runner,
        "attribute",
        "create",
        "arr",
        "--type",
        "number",
        "--entity",
        "company",
        "-w",
        ws,
        "--json",
    )
    assert code == 0
    assert json.loads(out)["type"] == "number"
    code, out, _ = invoke(runner, "attribute", "create", "birthday", "-t", "date", "-w", ws)
    assert code == 0 and "birthday" in out
    code, out, _ = invoke(runner, "attribute", "list", "-w", ws, "--json")
    names = [(a["entity"], a["name"], a["type"]) for a in json.loads(out)["data"]]
    assert names == [
        ("contact", "plan", "string"),
        ("company", "arr", "number"),
        ("contact", "birthday", "date"),
    ]
    code, out, _ = invoke(runner, "attribute", "list", "-w", ws, "--entity", "company", "--json")
    assert [a["name"] for a in json.loads(out)["data"]] == ["arr"]
    code, out, _ = invoke(runner, "attribute", "list", "-w", ws)
    assert code == 0 and "birthday" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("plan", "--type", "string"), "contact attribute 'plan' already exists"),
        (("score", "--type", "integer"), "type must be one of"),
        (("Score", "--type", "number"), "attribute names are lower-case"),
        (("tier", "--type", "string", "--entity", "deal"), "entity must be 'contact' or 'company'"),
    ],
)
def test_attribute_errors_exit_2(
    runner: CliRunner, ws: int, args: tuple[str, ...], message: str
) -> None:
    code, _, err = invoke(runner, "attribute", "create", *args, "-w", ws)
    assert code == 2 and message in " ".join(err.split())
