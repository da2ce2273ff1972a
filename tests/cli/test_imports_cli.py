"""``postwise import contacts`` and ``postwise export contacts`` through the real parser."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from postwise.cli.main import app
from postwise.contacts.attributes import define_attribute
from postwise.storage.database import Database
from postwise.storage.tables import Contact, ImportRun
from postwise.workspaces.actions import create_workspace


@pytest.fixture
def ws(db: Database) -> int:
    with db.system() as s:
        workspace_id = create_workspace(s, "Acme").workspace_id
    with db.tenant(workspace_id) as s:
        define_attribute(s, "contact", "seats", "number")
    return workspace_id


@pytest.fixture
def leads(tmp_path: Path) -> Path:
    path = tmp_path / "leads.csv"
    text = "E-Mail;Vorname;Firma;Sitze\nhans@müller.de;Hans;Müller GmbH;5\nkaputt;X;Y;1\n"
    path.write_bytes(text.encode("latin-1"))
    return path


MAP = ["--map", "E-Mail=email", "--map", "Vorname=first_name", "--map", "Firma=company.name"]


def test_import_prints_a_summary_and_writes_the_report(
    runner: CliRunner, db: Database, ws: int, leads: Path
) -> None:
    result = runner.invoke(
        app,
        ["import", "contacts", str(leads), "-w", str(ws), *MAP, "--map", "Sitze=attributes.seats",
         "--list", "Messe 2026", "--consent-text", "Visitenkarte abgegeben"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "created" in result.output and "latin-1" in result.output
    report = leads.with_name("leads.rejected.csv")
    assert report.is_file() and "leads.rejected" in result.output
    rows = list(csv.DictReader(io.StringIO(report.read_text("utf-8-sig")), delimiter=";"))
    assert [(r["_line"], r["_codes"], r["E-Mail"]) for r in rows] == [
        ("3", "invalid_email", "kaputt")
    ]
    with db.tenant(ws) as s:
        hans = s.scalar(select(Contact).where(Contact.email == "hans@xn--mller-kva.de"))
        run = s.scalars(select(ImportRun)).one()
    assert hans is not None and hans.attributes == {"seats": 5}
    assert (run.source, run.status, run.counts["created"]) == ("cli", "done", 1)


def test_import_twice_with_json_output(
    runner: CliRunner, ws: int, leads: Path, tmp_path: Path
) -> None:
    args = ["import", "contacts", str(leads), "-w", str(ws), *MAP, "--json"]
    args += ["--report", str(tmp_path / "out" / "rejects.csv"), "--encoding", "latin-1"]
    first = json.loads(runner.invoke(app, args).stdout)
    second = runner.invoke(app, args)
    assert second.exit_code == 0
    again = json.loads(second.stdout)
    assert (first["created"], first["rejected"]) == (1, 1)
    assert (again["created"], again["unchanged"], again["rejected"]) == (0, 1, 1)
    assert again["delimiter"] == ";" and again["ignored_columns"] == ["Sitze"]
    assert again["report"] == str(tmp_path / "out" / "rejects.csv")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--map", "Vorname=first_name"], "no column maps to email"),
        (["--map", "E-Mail=email", "--map", "Nope=email"], "--map names column 'Nope'"),
        (["--map", "E-Mail"], "is not COLUMN=FIELD"),
        (["--map", "E-Mail=email", "--delimiter", "#"], "delimiter must be"),
    ],
)
def test_unusable_input_exits_with_status_2(
    runner: CliRunner, db: Database, ws: int, leads: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["import", "contacts", str(leads), "-w", str(ws), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    with db.tenant(ws) as s:
        assert s.scalars(select(Contact)).first() is None


def test_missing_file_and_missing_workspace_exit_with_status_2(
    runner: CliRunner, ws: int, leads: Path, tmp_path: Path
) -> None:
    missing = runner.invoke(app, ["import", "contacts", str(tmp_path / "nope.csv"), "-w", str(ws)])
    assert missing.exit_code == 2 and "no such file" in " ".join(missing.output.split())
    nobody = runner.invoke(app, ["import", "contacts", str(leads), "-w", "999", *MAP])
    assert nobody.exit_code == 2 and "workspace 999 does not exist" in nobody.output


def test_export_writes_a_guarded_file_that_imports_back(
    runner: CliRunner, db: Database, ws: int, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("email,first_name,phone,seats\nann@initech.com,=Ann,+49 30 123456,-2\n")
    assert runner.invoke(app, ["import", "contacts", str(source), "-w", str(ws)]).exit_code == 0
    out = tmp_path / "export.csv"
    result = runner.invoke(app, ["export", "contacts", "-w", str(ws), "-o", str(out)])
    assert result.exit_code == 0 and "exported 1 contacts" in result.output
    [row] = list(csv.DictReader(io.StringIO(out.read_text("utf-8"))))
    assert (row["first_name"], row["phone"], row["attributes.seats"]) == (
        "'=Ann", "'+4930123456", "'-2",
    )  # fmt: skip
    again = runner.invoke(app, ["import", "contacts", str(out), "-w", str(ws), "--json"])
    assert json.loads(again.stdout)["unchanged"] == 1
    to_stdout = runner.invoke(app, ["export", "contacts", "-w", str(ws), "-o", "-"])
    assert to_stdout.stdout.startswith("email,") and "ann@initech.com" in to_stdout.stdout
    bad = runner.invoke(app, ["export", "contacts", "-w", str(ws), "-o", "-", "--list", "Nope"])
    assert bad.exit_code == 2 and "no list named 'Nope'" in bad.output
