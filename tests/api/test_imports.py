"""``/api/imports`` and ``/api/exports/contacts.csv`` through the HTTP API."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from postwise.contacts import actions, lists
from postwise.jobs.runner import Worker
from postwise.storage.database import Database
from postwise.storage.tables import Contact, ImportRun
from postwise.workspaces.actions import NewWorkspace, create_workspace
from tests.api.conftest import ClientFactory
from tests.api.support import issue_key, snapshot

CSV = (
    "E-Mail;Vorname;Firma\n"
    "ann@initech.com;Ann;Initech\n"
    "nope;Bad;X\n"
    'bob@initech.com;"Bob\nby";Initech\n'
    "ann@initech.com;Again;Initech\n"
)


def upload(api: TestClient, text: str | bytes, **fields: object) -> httpx.Response:
    body = text.encode() if isinstance(text, str) else text
    return api.post(
        "/api/imports",
        files={"file": ("leads.csv", body, "text/csv")},
        data={k: v for k, v in fields.items() if v is not None},
    )


def report(api: TestClient, url: str) -> list[dict[str, str]]:
    response = api.get(url)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    text = response.content.decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text), delimiter=";"))


def test_a_small_upload_is_imported_at_once(api: TestClient, db: Database) -> None:
    response = upload(
        api, CSV, map=["E-Mail=email", "Vorname=first_name", "Firma=company.name"], list="News"
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/api/imports/{body['id']}"
    assert body["status"] == "done" and body["filename"] == "leads.csv"
    assert body["counts"] == {
        "rows": 4, "created": 2, "updated": 0, "unchanged": 0, "rejected": 2,
        "ignored_columns": [],
    }  # fmt: skip
    assert body["bytes_read"] == body["bytes_total"] == len(CSV.encode())
    rows = report(api, body["report_url"])
    assert [(r["_line"], r["_codes"]) for r in rows] == [
        ("3", "invalid_email"),
        ("6", "duplicate_email"),  # the record after a two-line one starts on line 6
    ]
    assert api.get(f"/api/imports/{body['id']}").json() == body
    with db.tenant(1) as s:
        bob = s.scalar(select(Contact).where(Contact.email == "bob@initech.com"))
        assert bob is not None and bob.first_name == "Bob\nby"
        news = lists.find_list_by_name(s, "News")
        assert news is not None and lists.list_counts(s, news.id)["subscribed"] == 2
    again = upload(
        api, CSV, **{"map[]": ["E-Mail=email", "Vorname=first_name", "Firma=company.name"]}
    )
    assert again.json()["counts"]["unchanged"] == 2


def test_a_file_without_rejects_has_no_report(api: TestClient) -> None:
    body = upload(api, "email,notes\nann@initech.com,hi\n").json()
    assert body["report_url"] is None and body["counts"]["ignored_columns"] == ["notes"]
    missing = api.get(f"/api/imports/{body['id']}/report")
    assert missing.status_code == 404 and missing.json()["code"] == "no_report"


def test_a_big_upload_is_imported_by_a_worker(
    app: FastAPI, api: TestClient, db: Database, tmp_path: Path
) -> None:
    response = upload(api, CSV, background="true", map=["E-Mail=email"])
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued" and body["counts"]["rows"] == 0
    uploads = list((tmp_path / "imports").glob("*upload*.csv"))
    assert len(uploads) == 1
    assert Worker(db, settings=app.state.settings).run_until_idle() == 1
    done = api.get(f"/api/imports/{body['id']}").json()
    assert done["status"] == "done" and done["counts"]["created"] == 2
    assert done["started_at"] is not None and done["finished_at"] is not None
    assert [r["_line"] for r in report(api, done["report_url"])] == ["3", "6"]
    assert not uploads[0].exists()  # the upload goes once the import is settled


def test_a_background_import_of_an_unusable_file_fails_for_good(
    app: FastAPI, api: TestClient, db: Database
) -> None:
    body = upload(api, "name\nAnn\n", background="true").json()
    Worker(db, settings=app.state.settings).run_until_idle()
    failed = api.get(f"/api/imports/{body['id']}").json()
    assert failed["status"] == "failed" and "no column maps to email" in failed["error"]


def test_an_unusable_file_is_a_problem_and_the_run_says_why(api: TestClient, db: Database) -> None:
    response = upload(api, "name,company\nAnn,Initech\n")
    assert response.status_code == 400
    assert response.json()["code"] == "no_email_column"
    with db.tenant(1) as s:
        run = s.scalars(select(ImportRun)).one()
    assert run.status == "failed" and run.error is not None
    bad_map = upload(api, CSV, map=["no equals sign"])
    assert bad_map.status_code == 400 and bad_map.json()["code"] == "invalid_map"


def test_imports_need_contacts_write_and_exports_contacts_read(
    app: FastAPI, db: Database, workspace: NewWorkspace, make_client: ClientFactory
) -> None:
    reader = make_client(app, issue_key(db, workspace.workspace_id, ["contacts:read"]))
    writer = make_client(app, issue_key(db, workspace.workspace_id, ["contacts:write"]))
    assert upload(reader, "email\na@x.io\n").status_code == 403
    created = upload(writer, "email\na@x.io\n")
    assert created.status_code == 201
    assert reader.get(f"/api/imports/{created.json()['id']}").status_code == 403
    assert reader.get("/api/exports/contacts.csv").status_code == 200
    assert writer.get("/api/exports/contacts.csv").status_code == 403


def test_one_workspace_cannot_see_or_touch_another_workspaces_imports(
    app: FastAPI, api: TestClient, db: Database, make_client: ClientFactory
) -> None:
    with db.system() as s:
        other = create_workspace(s, "Other")
    theirs = make_client(app, other.api_key)
    their_import = upload(theirs, CSV, map=["E-Mail=email"]).json()
    before = snapshot(db, other.workspace_id)
    assert api.get(f"/api/imports/{their_import['id']}").status_code == 404
    assert api.get(f"/api/imports/{their_import['id']}/report").status_code == 404
    mine = upload(api, CSV, map=["E-Mail=email"], list="News")  # the same addresses
    assert mine.status_code == 201 and mine.json()["counts"]["created"] == 2
    exported = api.get("/api/exports/contacts.csv").text
    assert exported.count("@initech.com") == 2  # our two contacts, nothing of theirs
    assert snapshot(db, other.workspace_id) == before
    assert theirs.get(f"/api/imports/{their_import['id']}").status_code == 200


def test_export_streams_guarded_csv_and_filters(api: TestClient, db: Database) -> None:
    with db.tenant(1) as s:
        results = actions.upsert_contacts(
            s,
            [
                {"email": "ann@initech.com", "first_name": "=cmd|' /C calc'!A0"},
                {"email": "bob@initech.com", "status": "unsubscribed"},
            ],
            source="api",
        )
        news = lists.create_list(s, {"name": "News"})
        lists.subscribe(s, news.id, results[0].contact_id or 0, lists.ConsentInput("api"))
    response = api.get("/api/exports/contacts.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["email"] for r in rows] == ["ann@initech.com", "bob@initech.com"]
    assert rows[0]["first_name"] == "'=cmd|' /C calc'!A0"
    only_news = list(
        csv.DictReader(io.StringIO(api.get("/api/exports/contacts.csv?list=News").text))
    )
    assert [r["email"] for r in only_news] == ["ann@initech.com"]
    gone = api.get("/api/exports/contacts.csv", params={"status": "unsubscribed"}).text
    assert "bob@initech.com" in gone and "ann@initech.com" not in gone
    assert api.get("/api/exports/contacts.csv?status=gone").status_code == 400
    assert api.get("/api/exports/contacts.csv?list=Nope").status_code == 404
