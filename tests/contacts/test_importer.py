"""The CSV importer on both databases: reading, rejects and their report, idempotence,
and a property test that the set-based fast path ends where ``upsert_contacts`` does."""

from __future__ import annotations

import csv
import gc
import io
import json
import resource
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from postwise.contacts import actions, documents, importer, lists
from postwise.contacts.attributes import AttributeSchema, AttributeType, Entity, define_attribute
from postwise.contacts.bulkwrite import Row
from postwise.contacts.companies import upsert_company
from postwise.contacts.exporter import ExportFilter, guard_cell, prepare_export, unguard_cell
from postwise.contacts.fields import clean_contact
from postwise.contacts.importer import (
    ImportOptions,
    ImportResult,
    _Validator,
    import_contacts,
    resolve_columns,
)
from postwise.core.errors import ValidationFailed
from postwise.storage.database import Database
from postwise.storage.tables import (
    Company,
    Consent,
    Contact,
    ContactChange,
    ContactChangeBatch,
    ListMembership,
)
from postwise.workspaces.actions import create_workspace


@pytest.fixture
def ws(db: Database) -> int:
    with db.system() as s:
        workspace_id = create_workspace(s, "Acme").workspace_id
    with db.tenant(workspace_id) as s:
        define_attribute(s, "contact", "seats", "number")
        define_attribute(s, "contact", "plan", "string")
        define_attribute(s, "contact", "tags", "list")
        define_attribute(s, "company", "tier", "string")
    return workspace_id


def run(
    db: Database,
    ws: int,
    data: str | bytes,
    report: Path | None = None,
    **options: Any,
) -> ImportResult:
    raw = data.encode() if isinstance(data, str) else data
    return import_contacts(
        db.engine, ws, io.BytesIO(raw), ImportOptions(**options), report_path=report
    )


def report_rows(path: Path) -> list[dict[str, str]]:
    text = path.read_text(encoding="utf-8-sig")
    delimiter = csv.Sniffer().sniff(text.splitlines()[0], delimiters=",;\t|").delimiter
    return list(csv.DictReader(io.StringIO(text), delimiter=delimiter))


def stored(db: Database, ws: int, email: str) -> Contact | None:
    with db.tenant(ws) as s:
        return s.scalar(select(Contact).where(Contact.email == email))


def count(db: Database, ws: int, model: Any) -> int:
    with db.tenant(ws) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


# -- reading ---------------------------------------------------------------------------


def test_utf8_with_bom_and_default_mapping_by_header_names(db: Database, ws: int) -> None:
    data = "\ufeffEmail,First Name,LAST_NAME,Seats,attributes.plan\nann@initech.com,Ann,Lee,5,pro\n"
    result = run(db, ws, data.encode("utf-8"))
    assert (result.created, result.encoding, result.delimiter) == (1, "utf-8", ",")
    assert result.columns == {
        "Email": "email",
        "First Name": "first_name",
        "LAST_NAME": "last_name",
        "Seats": "attributes.seats",
        "attributes.plan": "attributes.plan",
    }
    ann = stored(db, ws, "ann@initech.com")
    assert ann is not None
    assert (ann.first_name, ann.last_name, ann.attributes) == (
        "Ann",
        "Lee",
        {"seats": 5, "plan": "pro"},
    )


def test_latin1_file_is_detected_and_decoded(db: Database, ws: int) -> None:
    data = "email;last_name;company.name\nhans@mueller.de;Müller;Müller & Söhne\n"
    result = run(db, ws, data.encode("latin-1"))
    assert (result.encoding, result.delimiter, result.created) == ("latin-1", ";", 1)
    hans = stored(db, ws, "hans@mueller.de")
    assert hans is not None and hans.last_name == "Müller"
    with db.tenant(ws) as s:
        assert s.scalar(select(Company.name)) == "Müller & Söhne"


def test_latin1_after_a_plain_ascii_sample_switches_without_losing_rows(
    db: Database, ws: int
) -> None:
    ascii_rows = "".join(f"p{i}@example.com,Person{i}\n" for i in range(4000))  # > 64 KiB
    assert len(ascii_rows) > 64 * 1024
    data = ("email,last_name\n" + ascii_rows).encode() + "late@example.com,Jäger\n".encode(
        "latin-1"
    )
    result = run(db, ws, data, batch_size=500)
    assert (result.rows, result.created, result.rejected) == (4001, 4001, 0)
    assert result.encoding == "latin-1" and "line 4002" in result.notes[0]
    late = stored(db, ws, "late@example.com")
    assert late is not None and late.last_name == "Jäger"


def test_a_stray_latin1_byte_in_a_utf8_file_rejects_only_its_record(
    db: Database, ws: int, tmp_path: Path
) -> None:
    filler = "".join(f"p{i}@example.com,Person{i}\n" for i in range(4000)).encode()
    data = (
        b"email,last_name\n"
        + "ok@example.com,Jörg\n".encode()  # real UTF-8 early on
        + filler  # the sample (64 KiB) ends in here
        + b"bad@example.com,J\xe4ger\n"  # line 4003: Latin-1
        + b"next@example.com,Next\n"
    )
    result = run(db, ws, data, report=tmp_path / "r.csv", batch_size=1000)
    assert (result.encoding, result.created, result.rejected) == ("utf-8", 4002, 1)
    [row] = report_rows(tmp_path / "r.csv")
    assert row["_line"] == "4003" and row["_codes"] == "undecodable"
    assert "not valid UTF-8" in row["_reason"] and "0xe4" in row["_reason"]
    assert stored(db, ws, "bad@example.com") is None
    ok = stored(db, ws, "ok@example.com")
    assert ok is not None and ok.last_name == "Jörg"


@pytest.mark.parametrize(
    ("delimiter", "option"), [(";", "auto"), ("\t", "auto"), ("|", "auto"), ("\t", "tab")]
)
def test_delimiters_are_sniffed_or_given(
    db: Database, ws: int, delimiter: str, option: str
) -> None:
    lines = [["email", "first_name", "job_title"], ["a@x.io", "Ann", "Head, Sales"]]
    data = "".join(delimiter.join(cells) + "\n" for cells in lines)
    result = run(db, ws, data, delimiter=option)
    assert result.delimiter == delimiter and result.created == 1
    contact = stored(db, ws, "a@x.io")
    assert contact is not None and contact.job_title == "Head, Sales"


def test_single_column_file(db: Database, ws: int) -> None:
    assert run(db, ws, "email\na@x.io\nb@x.io\n").created == 2


# -- rejects and the report ------------------------------------------------------------


def test_rejected_rows_are_reported_with_the_line_where_their_record_starts(
    db: Database, ws: int, tmp_path: Path
) -> None:
    report = tmp_path / "rejects.csv"
    data = (
        "email,first_name,seats,plan\n"  # line 1
        'good@x.io,"Multi\nline\nname",3,pro\n'  # lines 2-4
        "nope,Ann,1,x\n"  # line 5
        'ragged@x.io,"also\nmulti"\n'  # lines 6-7: 2 cells of 4
        "nul@x.io,A\x00B,1,x\n"  # line 8
        "seats@x.io,Sam,many,x\n"  # line 9
        f"long@x.io,{'x' * 201},1,x\n"  # line 10
        "\n"  # line 11: blank, skipped
        "good@x.io,Again,1,x\n"  # line 12: duplicate of line 2
        "after@x.io,After,1,x\n"  # line 13
    )
    result = run(db, ws, data, report=report, batch_size=3)
    assert (result.rows, result.created, result.rejected) == (8, 2, 6)
    assert result.report_path == str(report)
    rows = report_rows(report)
    assert [(r["_line"], r["_codes"]) for r in rows] == [
        ("5", "invalid_email"),
        ("6", "wrong_cell_count"),
        ("8", "invalid_character"),
        ("9", "invalid_attribute"),
        ("10", "too_long"),
        ("12", "duplicate_email"),
    ]
    assert rows[0]["_email"] == "nope" and rows[0]["first_name"] == "Ann"
    assert "line 2" in rows[5]["_reason"]
    assert rows[1]["first_name"] == "also\nmulti"
    assert "\x00" not in report.read_text(encoding="utf-8-sig")
    good = stored(db, ws, "good@x.io")
    assert good is not None and good.first_name == "Multi\nline\nname"
    for email in ("nope", "ragged@x.io", "nul@x.io", "seats@x.io", "long@x.io"):
        assert stored(db, ws, email) is None


def test_report_cells_are_guarded_against_formulas(db: Database, ws: int, tmp_path: Path) -> None:
    report = tmp_path / "r.csv"
    run(db, ws, 'email,plan\n"=HYPERLINK(""x"")",@SUM(1)\n', report=report)
    [row] = report_rows(report)
    assert row["_email"] == '\'=HYPERLINK("x")' and row["plan"] == "'@SUM(1)"


def test_bad_rows_change_nothing_already_stored(db: Database, ws: int) -> None:
    with db.tenant(ws) as s:
        actions.upsert_contacts(
            s, [{"email": "ann@x.io", "first_name": "Ann", "country": "DE"}], source="api"
        )
    before = stored(db, ws, "ann@x.io")
    assert before is not None
    result = run(db, ws, "email,first_name,country\nann@x.io,Changed,XX\n")
    assert (result.rejected, result.updated) == (1, 0)
    after = stored(db, ws, "ann@x.io")
    assert after is not None
    assert (after.first_name, after.country, after.updated_at) == ("Ann", "DE", before.updated_at)


def test_empty_cells_never_erase_stored_values(db: Database, ws: int) -> None:
    with db.tenant(ws) as s:
        actions.upsert_contacts(
            s,
            [{"email": "ann@x.io", "first_name": "Ann", "attributes": {"plan": "pro"}}],
            source="api",
        )
    result = run(db, ws, "email,first_name,last_name,plan,seats\nann@x.io,, Lee ,,4\n")
    assert result.updated == 1
    ann = stored(db, ws, "ann@x.io")
    assert ann is not None
    assert (ann.first_name, ann.last_name) == ("Ann", "Lee")
    assert ann.attributes == {"plan": "pro", "seats": 4}
    with db.tenant(ws) as s:
        change = s.scalars(select(ContactChange).where(ContactChange.kind == "updated")).one()
    assert change.source == "import"
    assert change.changes == {
        "last_name": [None, "Lee"],
        "attributes": [{"seats": None}, {"seats": 4}],
    }


def test_sticky_statuses_are_never_undone_by_an_import(
    db: Database, ws: int, tmp_path: Path
) -> None:
    with db.tenant(ws) as s:
        [gone, quiet] = actions.upsert_contacts(
            s, [{"email": "gone@x.io"}, {"email": "quiet@x.io"}], source="api"
        )
        actions.set_status(s, gone.contact_id or 0, "unsubscribed", source="system")
        actions.set_status(s, quiet.contact_id or 0, "bounced", source="system")
    report = tmp_path / "r.csv"
    data = (
        "email,status,first_name\ngone@x.io,subscribed,G\nquiet@x.io,,Q\nnew@x.io,unsubscribed,N\n"
    )
    result = run(db, ws, data, report=report, list_name="News")
    assert (result.created, result.updated, result.rejected) == (1, 1, 1)
    assert report_rows(report)[0]["_codes"] == "status_locked"
    statuses = {
        e: getattr(stored(db, ws, e), "status", None)
        for e in ("gone@x.io", "quiet@x.io", "new@x.io")
    }
    assert statuses == {
        "gone@x.io": "unsubscribed",
        "quiet@x.io": "bounced",
        "new@x.io": "unsubscribed",
    }
    assert count(db, ws, ListMembership) == 0  # nobody who opted out joins the list


def test_external_id_owned_by_someone_else_is_rejected(
    db: Database, ws: int, tmp_path: Path
) -> None:
    with db.tenant(ws) as s:
        actions.upsert_contacts(s, [{"email": "owner@x.io", "external_id": "crm-1"}], source="api")
    report = tmp_path / "r.csv"
    data = "email,external_id\nother@x.io,crm-1\nthird@x.io,crm-2\nfourth@x.io,crm-2\n"
    result = run(db, ws, data, report=report, batch_size=2)
    assert (result.created, result.rejected) == (1, 2)
    assert [r["_codes"] for r in report_rows(report)] == ["external_id_taken"] * 2


def test_an_external_id_freed_by_a_later_row_is_retried_so_a_rerun_changes_nothing(
    db: Database, ws: int, tmp_path: Path
) -> None:
    with db.tenant(ws) as s:
        actions.upsert_contacts(
            s,
            [
                {"email": "ann@x.io", "external_id": "crm-2"},
                {"email": "kim@x.io", "external_id": "crm-9"},
            ],
            source="api",
        )
    report = tmp_path / "r.csv"
    data = (
        "email,external_id,company.name\n"
        "bob@initech.com,crm-2,Initech\n"  # crm-2 is ann's until line 4
        "eve@x.io,crm-9,\n"  # crm-9 stays kim's: refused for good
        "ann@x.io,crm-1,\n"
        "zed@initech.com,,Initech Inc\n"  # bob's line owns company.name
    )
    first = run(db, ws, data, report=report, batch_size=1)
    assert (first.created, first.updated, first.rejected) == (2, 1, 1)
    assert [(r["_line"], r["_codes"]) for r in report_rows(report)] == [("3", "external_id_taken")]
    bob = stored(db, ws, "bob@initech.com")
    assert bob is not None and bob.external_id == "crm-2"
    with db.tenant(ws) as s:
        assert s.scalar(select(Company.name).where(Company.domain == "initech.com")) == "Initech"
    before = _state(db, ws)
    again = run(db, ws, data, batch_size=1)
    assert (again.created, again.updated, again.unchanged, again.rejected) == (0, 0, 3, 1)
    assert _state(db, ws) == before


# -- idempotence, lists, companies -----------------------------------------------------


def _sorted(document: dict[str, Any]) -> str:
    """A JSON document in one canonical text (key order differs between backends)."""
    return json.dumps(document, sort_keys=True)


def _state(db: Database, ws: int) -> dict[str, Any]:
    with db.tenant(ws) as s:
        return {
            "contacts": sorted(
                (c.email, c.first_name, c.status, _sorted(c.attributes), c.company_id, c.updated_at)
                for c in s.scalars(select(Contact))
            ),
            "companies": sorted(
                (c.domain, c.name, c.industry, c.employee_count, c.updated_at)
                for c in s.scalars(select(Company))
            ),
            "changes": s.scalar(select(func.count()).select_from(ContactChange)),
            "batches": s.scalar(select(func.count()).select_from(ContactChangeBatch)),
            "consents": s.scalar(select(func.count()).select_from(Consent)),
            "members": sorted(
                (m.contact_id, m.status, m.updated_at) for m in s.scalars(select(ListMembership))
            ),
        }


def test_the_collector_is_paced_while_imports_run_and_restored_after(db: Database, ws: int) -> None:
    before = gc.get_threshold()
    during: list[tuple[int, int, int]] = []
    text = "email\n" + "".join(f"p{i}@acme.io\n" for i in range(5))
    import_contacts(
        db.engine,
        ws,
        io.BytesIO(text.encode()),
        ImportOptions(batch_size=2),
        on_batch=lambda _session, _progress: during.append(gc.get_threshold()),
    )
    assert during and set(during) == {importer.GC_THRESHOLDS}
    assert gc.get_threshold() == before

    # Imports overlapping in one process: the last one to end restores the thresholds.
    pace = importer._CollectorPace()
    with pace():
        with pace():
            assert gc.get_threshold() == importer.GC_THRESHOLDS
        assert gc.get_threshold() == importer.GC_THRESHOLDS
    assert gc.get_threshold() == before


def test_importing_the_same_file_twice_changes_nothing(db: Database, ws: int) -> None:
    data = (
        "email,first_name,seats,tags,company.name,company.employee_count\n"
        "ann@initech.com,Ann,3,a;b,Initech,120\n"
        "bob@initech.com,Bob,4,,Initech Inc,130\n"  # disagrees: the first value wins
        "ann@initech.com,Anne,5,,,\n"  # a duplicate with other values
        "cid@gmail.com,Cid,1,,Ignored Ltd,\n"  # free mail: no company
    )
    first = run(db, ws, data, list_name="News", consent_text="Yes please", batch_size=2)
    assert (first.created, first.rejected) == (3, 1)
    before = _state(db, ws)
    second = run(db, ws, data, list_name="News", consent_text="Yes please", batch_size=2)
    assert (second.created, second.updated, second.unchanged, second.rejected) == (0, 0, 3, 1)
    assert _state(db, ws) == before
    assert before["companies"][0][:4] == ("initech.com", "Initech", None, 120)
    ann = stored(db, ws, "ann@initech.com")
    assert ann is not None and ann.attributes == {"seats": 3, "tags": ["a", "b"]}


def test_created_contacts_are_recorded_once_per_batch_and_each_timeline_shows_it(
    db: Database, ws: int
) -> None:
    run(db, ws, "email\nann@x.io\nbob@x.io\ncid@x.io\n", batch_size=2)
    run(db, ws, "email,first_name\nann@x.io,Ann\n")
    with db.tenant(ws) as s:
        actions.upsert_contacts(s, [{"email": "dan@x.io"}], source="api")
    with db.tenant(ws) as s:
        batches = s.execute(
            select(
                ContactChangeBatch.kind, ContactChangeBatch.source, ContactChangeBatch.contacts
            ).order_by(ContactChangeBatch.id)
        ).all()
        timelines = {
            c.email: [
                (entry["change"], entry["source"], entry["details"], entry["at"])
                for entry in documents.timeline(s, c.id)
            ]
            for c in s.scalars(select(Contact))
        }
        created = {c.email: c.created_at.isoformat() for c in s.scalars(select(Contact))}
    assert batches == [("created", "import", 2), ("created", "import", 1)]
    assert count(db, ws, ContactChange) == 2  # Ann's update and Dan's creation, per contact
    assert [entry[:3] for entry in timelines["ann@x.io"]] == [
        ("updated", "import", {"first_name": [None, "Ann"]}),
        ("created", "import", {}),
    ]
    for email in ("bob@x.io", "cid@x.io"):
        assert timelines[email] == [("created", "import", {}, created[email])]
    assert [entry[:2] for entry in timelines["dan@x.io"]] == [("created", "api")]


def test_new_memberships_get_consent_existing_ones_are_left_alone(db: Database, ws: int) -> None:
    with db.tenant(ws) as s:
        news = lists.create_list(s, {"name": "News"})
        [left] = actions.upsert_contacts(s, [{"email": "left@x.io"}], source="api")
        lists.subscribe(s, news.id, left.contact_id or 0, lists.ConsentInput("form"))
        lists.unsubscribe(s, news.id, left.contact_id or 0, source="api")
        weekly = lists.create_list(s, {"name": "Weekly", "double_opt_in": True})
    run(
        db,
        ws,
        "email\nleft@x.io\nnew@x.io\n",
        list_name="News",
        consent_text="Opted in at the fair",
    )
    run(db, ws, "email\nnew@x.io\n", list_name="Weekly")
    with db.tenant(ws) as s:
        members = {(m.list_id, m.contact_id): m.status for m in s.scalars(select(ListMembership))}
        new = s.scalar(select(Contact.id).where(Contact.email == "new@x.io"))
        consent = s.scalars(
            select(Consent).where(Consent.contact_id == new, Consent.list_id == news.id)
        ).one()
        kinds = Counter(entry["change"] for entry in documents.timeline(s, new))
    assert members[(news.id, left.contact_id)] == "unsubscribed"
    assert members[(news.id, new)] == "subscribed" and members[(weekly.id, new)] == "pending"
    assert (consent.source, consent.consent_text) == ("import", "Opted in at the fair")
    assert kinds == Counter({"created": 1, "subscribed": 1, "pending": 1})


def test_company_columns_update_the_linked_company(db: Database, ws: int, tmp_path: Path) -> None:
    with db.tenant(ws) as s:
        upsert_company(s, {"domain": "initech.com", "name": "Initech", "industry": "SaaS"})
    report = tmp_path / "r.csv"
    data = (
        "email,company.name,company.employee_count,company.country,company.attributes.tier\n"
        "ann@initech.com,,250,de,gold\n"
        "bob@acme.io,Acme,many,,\n"  # invalid company value: the whole row goes
    )
    result = run(db, ws, data, report=report)
    assert (result.created, result.rejected) == (1, 1)
    assert report_rows(report)[0]["_codes"] == "invalid_employee_count"
    with db.tenant(ws) as s:
        companies = {c.domain: c for c in s.scalars(select(Company))}
    initech = companies["initech.com"]
    assert (initech.name, initech.industry, initech.employee_count, initech.size_band) == (
        "Initech", "SaaS", 250, "201-500",
    )  # fmt: skip
    assert (initech.country, initech.attributes) == ("DE", {"tier": "gold"})
    assert "acme.io" not in companies
    ann = stored(db, ws, "ann@initech.com")
    assert ann is not None and ann.company_id == initech.id


def test_a_stored_contact_without_company_is_linked_without_an_update(
    db: Database, ws: int
) -> None:
    with db.tenant(ws) as s:
        actions.upsert_contacts(s, [{"email": "ann@initech.com"}], source="api")
        s.execute(Contact.__table__.update().values(company_id=None))
    before = stored(db, ws, "ann@initech.com")
    assert before is not None and before.company_id is None
    result = run(db, ws, "email\nann@initech.com\n")
    assert result.unchanged == 1
    after = stored(db, ws, "ann@initech.com")
    assert after is not None and after.company_id is not None
    assert after.updated_at == before.updated_at


def test_the_import_stays_in_its_workspace(db: Database, ws: int) -> None:
    with db.system() as s:
        other = create_workspace(s, "Other").workspace_id
    with db.tenant(other) as s:
        actions.upsert_contacts(s, [{"email": "ann@initech.com", "first_name": "B"}], source="api")
    result = run(db, ws, "email,first_name\nann@initech.com,A\n", list_name="News")
    assert result.created == 1
    theirs = stored(db, other, "ann@initech.com")
    assert theirs is not None and theirs.first_name == "B"
    assert count(db, other, Company) == 1 and count(db, other, ListMembership) == 0


# -- unusable input --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "options", "code"),
    [
        (b"", {}, "empty_file"),
        (b"\n\nemail\n", {}, "no_header"),
        (b"name,company\nAnn,Initech\n", {}, "no_email_column"),
        (b"ann@x.io,Ann\nbob@x.io,Bob\n", {}, "no_header"),
        (b"PK\x03\x04rest of a workbook", {}, "unsupported_file"),
        ("email\n".encode("utf-16"), {}, "unsupported_file"),
        (b"email\rann@x.io\r", {}, "unsupported_line_endings"),
        (b"email,e\nann@x.io,x\n", {"mapping": {"e": "email"}}, "duplicate_target"),
        (b"email\nann@x.io\n", {"mapping": {"mail": "email"}}, "unknown_column"),
        (b"email,x\nann@x.io,1\n", {"mapping": {"x": "favourite"}}, "unknown_field"),
        (b"email,x\nann@x.io,1\n", {"mapping": {"x": "attributes.nope"}}, "unknown_attribute"),
        (b"email\nann@x.io\n", {"encoding": "ebcdic"}, "invalid_encoding"),
    ],
)
def test_unusable_files_are_refused_before_anything_is_written(
    db: Database, ws: int, data: bytes, options: dict[str, Any], code: str
) -> None:
    with pytest.raises(ValidationFailed) as info:
        run(db, ws, data, list_name="News", **options)
    assert info.value.code == code
    assert count(db, ws, Contact) == 0
    with db.tenant(ws) as s:
        assert lists.find_list_by_name(s, "News") is None


def test_unmapped_columns_are_reported_and_explicit_ignores_are_not(db: Database, ws: int) -> None:
    result = run(
        db,
        ws,
        "E-Mail,Notes,Internal,company.domain\na@x.io,n,i,x.io\n",
        mapping={"E-Mail": "email", "Internal": ""},
    )
    assert result.created == 1
    assert result.ignored_columns == ["Notes", "company.domain"]


# -- export round trip -----------------------------------------------------------------


def test_formula_guard_and_its_inverse() -> None:
    for raw in ("=1+2", "+49301234", "-5", "@SUM(A1)", "\tx", "\rx"):
        assert guard_cell(raw) == "'" + raw and unguard_cell(guard_cell(raw)) == raw
    for raw in ("plain", "", "'quoted", "a=b"):
        assert guard_cell(raw) == raw and unguard_cell(raw) == raw


def test_export_imports_back_unchanged(db: Database, ws: int) -> None:
    with db.tenant(ws) as s:
        upsert_company(
            s, {"domain": "initech.com", "name": "=Initech", "attributes": {"tier": "gold"}}
        )
        actions.upsert_contacts(
            s,
            [
                {
                    "email": "ann@initech.com",
                    "first_name": "-Ann",
                    "phone": "+49 30 1234567",
                    "attributes": {"seats": -3, "plan": "=1+2", "tags": ["a", "b"]},
                },
                {"email": "bob@gmail.com", "last_name": "@bob", "status": "unsubscribed"},
            ],
            source="api",
        )
    text = "".join(prepare_export(db.engine, ws, ExportFilter()).csv_chunks())
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["phone"] == "'+49301234567" and rows[0]["attributes.plan"] == "'=1+2"
    assert rows[0]["company.name"] == "'=Initech" and rows[1]["last_name"] == "'@bob"
    with db.system() as s:
        fresh = create_workspace(s, "Fresh").workspace_id
    with db.tenant(fresh) as s:
        for entity, name, kind in (
            ("contact", "seats", "number"), ("contact", "plan", "string"),
            ("contact", "tags", "list"), ("company", "tier", "string"),
        ):  # fmt: skip
            define_attribute(s, entity, name, kind)
    result = run(db, fresh, text)
    assert (result.created, result.rejected) == (2, 0)
    assert "id" in result.ignored_columns and "company.domain" in result.ignored_columns

    def snapshot(workspace: int) -> list[tuple[Any, ...]]:
        with db.tenant(workspace) as s:
            found = s.execute(select(Contact, Company).outerjoin(Company)).all()
            return sorted(
                (c.email, c.first_name, c.last_name, c.phone, c.status, _sorted(c.attributes),
                 co.domain if co else None, co.name if co else None,
                 _sorted(co.attributes) if co else None)
                for c, co in found
            )  # fmt: skip

    assert snapshot(fresh) == snapshot(ws)
    assert run(db, ws, text).unchanged == 2  # and into the original: nothing to do


# -- the remembering validator equals the shared rules ----------------------------------

# column: (valid cells, invalid cells); empty and padded cells are valid ("not given").
VALIDATOR_CELLS = {
    "email": (["ann@acme.io", " Bob@Acme.IO ", "'@x@acme.io"], ["nope", "", "a@b"]),
    "external_id": (["", "crm-1", " crm-2 "], ["x" * 256]),
    "first_name": (["", "Ann", " Bob ", "'=SUM(1)", "  "], ["x" * 201]),
    "last_name": (["", "Smith", "Ünal"], ["y" * 201]),
    "job_title": (["", "CTO", "'@home"], ["t" * 201]),
    "seniority": (["", "VP", "c-level", "senior"], ["boss"]),
    "department": (["", "Sales"], ["d" * 65]),
    "country": (["", "de", "FR"], ["XX"]),
    "timezone": (["", "Europe/Berlin"], ["Mars/Base"]),
    "language": (["", "en", "de-CH"], ["!!"]),
    "phone": (["", "+49 (30) 123-456"], ["12"]),
    "status": (["", "Subscribed", "bounced"], ["nah"]),
    "seats": (["", "5", "5.0", "1e3"], ["many", "True"]),
    "plan": (["", "pro", "'=1+2"], []),
    "tags": (["", "a;b", " b ; ; a "], []),
    "vip": (["", "yes", "FALSE"], ["maybe"]),
    "since": (["", "2024-02-29", "2024-01-01T10:00:00Z"], ["2024-02-30"]),
    "company.name": (["", "Acme", " Initech "], ["n" * 256]),
    "company.industry": (["", "software"], ["z" * 101]),
    "company.employee_count": (["", "12", "0", "600"], ["-1", "ten", "3000000000"]),
    "company.size_band": (["", "11-50", "1-10"], ["huge"]),
    "company.revenue_band": (["", "1M-10M"], ["1m-10m"]),
    "company.country": (["", "FR"], ["ZZ"]),
    "company.attributes.tier": (["", "gold", "'+x"], []),
}


@st.composite
def _validator_row(draw: st.DrawFn) -> dict[str, str]:
    """Mostly valid rows (so the remembering path assembles whole rows), now and then
    one invalid cell."""
    row = {name: draw(st.sampled_from(valid)) for name, (valid, _) in VALIDATOR_CELLS.items()}
    if draw(st.integers(0, 3)) == 0:
        broken = [name for name, (_, invalid) in VALIDATOR_CELLS.items() if invalid]
        name = draw(st.sampled_from(broken))
        row[name] = draw(st.sampled_from(VALIDATOR_CELLS[name][1]))
    return row


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(_validator_row(), min_size=1, max_size=30),
    order=st.permutations(list(VALIDATOR_CELLS)),
    remembered=st.integers(1, 6),
    ragged=st.booleans(),
)
def test_remembered_cells_decide_every_row_as_the_shared_rules(
    rows: list[dict[str, str]], order: list[str], remembered: int, ragged: bool
) -> None:
    """``_Validator.check`` (each distinct cell cleaned once, columns that stop repeating
    cleaned row by row) gives exactly what ``exact`` (the whole row through
    ``clean_contact``/``clean_company``) gives: the same values in the same order, or
    the same reasons; a tiny cache forces every path, including the row-by-row one."""
    schema = AttributeSchema(
        Entity.CONTACT,
        {
            "seats": AttributeType.NUMBER,
            "plan": AttributeType.STRING,
            "tags": AttributeType.LIST,
            "vip": AttributeType.BOOLEAN,
            "since": AttributeType.DATE,
        },
    )
    company_schema = AttributeSchema(Entity.COMPANY, {"tier": AttributeType.STRING})
    columns = resolve_columns(order, {}, schema, company_schema)
    validator = _Validator(columns, schema, company_schema)
    assembled = 0
    saved = importer.CELL_CACHE
    importer.CELL_CACHE = remembered
    try:
        for line, row in enumerate(rows, start=2):
            cells = [row[name] for name in order]
            if ragged and line % 5 == 0:
                cells.append("")
            fast, exact = validator.check(line, cells), validator.exact(line, cells)
            assert fast == exact
            assembled += isinstance(fast, Row)
            if isinstance(fast, Row) and isinstance(exact, Row):
                assert list(fast.values) == list(exact.values)
                assert list(fast.company or {}) == list(exact.company or {})
    finally:
        importer.CELL_CACHE = saved
    event(f"rows applied: {'some' if assembled else 'none'}")


# -- the fast path equals upsert_contacts ----------------------------------------------

POOL = ["ann@acme.io", "bob@acme.io", "Cid@gmail.com", "dee@initech.com", "not an email", ""]
CELLS = {
    "email": st.sampled_from(POOL),
    "first_name": st.sampled_from(["", "Ann", " Bob ", "Ülrich", "two\nlines", "x" * 201]),
    "country": st.sampled_from(["", "DE", "fr", "XX"]),
    "status": st.sampled_from(["", "subscribed", "unsubscribed", "pending", "bounced", "nah"]),
    "external_id": st.sampled_from(["", "", "crm-1", "crm-2"]),
    "seats": st.sampled_from(["", "5", "5.0", "-3", "many"]),
    "plan": st.sampled_from(["", "pro", "=1+2", "team"]),
    "tags": st.sampled_from(["", "a;b", " b ; ; a "]),
}
ATTRIBUTES = ("seats", "plan", "tags")
ROWS = st.lists(st.fixed_dictionaries(CELLS), min_size=1, max_size=12)
EXISTING = st.lists(
    st.tuples(
        st.sampled_from(POOL[:4]),
        st.sampled_from(["subscribed", "unsubscribed", "bounced", "pending"]),
        st.sampled_from(["", "crm-1", "crm-2"]),
        st.sampled_from([{}, {"plan": "pro"}, {"seats": 5, "tags": ["a", "b"]}]),
    ),
    max_size=4,
    unique_by=lambda item: item[0],
)


def _input(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row as the importer hands it to ``clean_contact``: trimmed, blanks absent."""
    data: dict[str, Any] = {
        k: v.strip() for k, v in row.items() if k not in ATTRIBUTES and v.strip()
    }
    attributes = {k: row[k].strip() for k in ATTRIBUTES if row[k].strip()}
    if attributes:
        data["attributes"] = attributes
    return data


def _seed(db: Database, existing: Sequence[tuple[str, str, str, dict[str, Any]]]) -> int:
    with db.system() as s:
        workspace_id = create_workspace(s, "Property").workspace_id
    with db.tenant(workspace_id) as s:
        for name, kind in (("seats", "number"), ("plan", "string"), ("tags", "list")):
            define_attribute(s, "contact", name, kind)
        taken: set[str] = set()
        for email, status, external_id, attributes in existing:
            row: dict[str, Any] = {"email": email, "attributes": attributes}
            if external_id and external_id not in taken:
                row["external_id"] = external_id
                taken.add(external_id)
            [result] = actions.upsert_contacts(s, [row], source="api")
            actions.set_status(s, result.contact_id or 0, status, source="system")
    return workspace_id


def _contacts(db: Database, workspace_id: int) -> tuple[dict[str, Any], Counter[Any]]:
    """Every contact's fields and company domain, and the import's audit entries."""
    with db.tenant(workspace_id) as s:
        found = s.execute(select(Contact, Company.domain).outerjoin(Company)).all()
        # Through the timeline: the importer records "created" once per batch, the ORM
        # path once per contact; a contact's timeline must read the same either way.
        changes = Counter(
            (c.email, entry["change"], json.dumps(entry["details"], sort_keys=True))
            for c, _ in found
            for entry in documents.timeline(s, c.id)
            if entry["kind"] == "change" and entry["source"] == "import"
        )
    contacts = {
        c.email: (c.first_name, c.country, c.status, c.external_id, _sorted(c.attributes), domain)
        for c, domain in found
    }
    return contacts, changes


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(existing=EXISTING, rows=ROWS, batch_size=st.integers(1, 4))
def test_importer_ends_where_upsert_contacts_does(
    db: Database,
    existing: list[tuple[str, str, str, dict[str, Any]]],
    rows: list[dict[str, str]],
    batch_size: int,
) -> None:
    reference, imported = _seed(db, existing), _seed(db, existing)

    # Reference: the ORM path, fed what the importer would apply, batch by batch.
    statuses: Counter[str] = Counter()
    with db.tenant(reference) as s:
        schema = AttributeSchema.load(s, Entity.CONTACT)
    seen: set[str] = set()
    retry: list[dict[str, Any]] = []

    def upsert(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Apply like the importer; returns the rows refused for a taken external id."""
        with db.tenant(reference) as s:
            results = actions.upsert_contacts(s, batch, source="import")
        statuses.update(r.status for r in results if r.status != "rejected")
        return [
            data
            for data, r in zip(batch, results, strict=True)
            if any(e.code == "external_id_taken" for e in r.errors)
        ]

    for start in range(0, len(rows), batch_size):
        batch = []
        for row in rows[start : start + batch_size]:
            data = _input(row)
            try:
                email = clean_contact(data, schema)["email"]
            except ValidationFailed:
                continue
            if email not in seen:
                seen.add(email)
                batch.append(data)
        if batch:
            retry += upsert(batch)
    while retry:  # the importer's retry passes, until one gets nothing in
        pending, retry = retry, []
        for start in range(0, len(pending), batch_size):
            retry += upsert(pending[start : start + batch_size])
        if len(retry) == len(pending):
            break

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CELLS))
    writer.writeheader()
    writer.writerows(rows)
    result = run(db, imported, buffer.getvalue(), batch_size=batch_size)

    assert _contacts(db, imported) == _contacts(db, reference)
    assert (result.created, result.updated, result.unchanged) == (
        statuses["created"], statuses["updated"], statuses["unchanged"],
    )  # fmt: skip
    again = run(db, imported, buffer.getvalue(), batch_size=batch_size)
    assert (again.created, again.updated) == (0, 0)
    assert _contacts(db, imported) == _contacts(db, reference)


# -- size ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_50k_row_file_streams_in_bounded_memory(db: Database, ws: int, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["email", "first_name", "company.name", "seats", "plan"])
        for i in range(50_000):
            domain = "gmail.com" if i % 10 == 0 else f"company{i % 5000}.example"
            out.writerow([f"p{i}@{domain}", f"Person {i}", f"Company {i % 5000}", i % 500, "pro"])
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result = import_contacts(db.engine, ws, path, ImportOptions(list_name="All"))
    growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert (result.rows, result.created, result.rejected) == (50_000, 50_000, 0)
    assert growth_mib < 150, f"peak RSS grew by {growth_mib:.0f} MiB"
    assert count(db, ws, ListMembership) == 50_000
    assert count(db, ws, Company) == 4500  # every tenth row is at gmail.com


def test_a_remembered_count_decides_the_band_over_a_band_cleaned_row_by_row() -> None:
    """Hypothesis found it: once the band column stops being remembered (cleaned with the
    rest of its row) while the count column still is, the row's band must still follow
    the count, as ``clean_company`` has it; a band cell cleaned with its row once won."""
    schema = AttributeSchema(Entity.CONTACT, {})
    company_schema = AttributeSchema(Entity.COMPANY, {})
    order = list(VALIDATOR_CELLS)
    columns = resolve_columns(order, {}, schema, company_schema)
    validator = _Validator(columns, schema, company_schema)
    # The band misses while no count is given (so it is looked at) and stops being
    # remembered; the count, blank and then "12", stays remembered.
    counts_and_bands = [("", "")] * 3 + [("", "1-10"), ("", "51-200"), ("12", "1-10")]
    saved = importer.CELL_CACHE
    importer.CELL_CACHE = 1
    try:
        for line, (count, band) in enumerate(counts_and_bands, start=2):
            row = dict.fromkeys(order, "")
            row |= {"email": "ann@acme.io", "company.employee_count": count}
            row["company.size_band"] = band
            cells = [row[name] for name in order]
            fast, exact = validator.check(line, cells), validator.exact(line, cells)
            assert fast == exact
            if count:
                assert isinstance(fast, Row)
                assert (fast.company or {})["size_band"] == "11-50"
    finally:
        importer.CELL_CACHE = saved
