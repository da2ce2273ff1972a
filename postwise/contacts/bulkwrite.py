"""The importer's fast path: validated contact rows written a batch at a time, set-based.

``contacts.actions.upsert_contacts`` works row by row through the ORM; this module gives
the same result for thousands of rows in a handful of statements (the equivalence is a
property test in ``tests/contacts/test_importer.py``). A batch goes through two stages.

``Planner.prepare`` (reads, and the import's own scratch table):

1. **claim** each email: the first line of the file naming an address wins, later ones
   are rejected as duplicates. This is what makes importing a file twice a no-op even
   when it names someone twice with different values. Company columns are claimed the
   same way per company and field: the first row that passes validation owns the value,
   even if the database refuses that row later (so a rerun decides it the same way);
2. **read** the stored contacts that share an email or external id with the batch and
   **plan** each row exactly as ``upsert_contacts`` decides it: created, updated with its
   diff, unchanged, or rejected (a sticky status it would undo, an external id owned by
   someone else).

``Writer.write`` (one transaction per batch):

3. **companies** of business domains are created if missing (free mail never) and
   updated from company columns;
4. **contacts**: ``INSERT ... ON CONFLICT (workspace_id, email) DO UPDATE ... WHERE
   (stored row) IS DISTINCT FROM (new row)``, fed by ``COPY`` into a staging table on
   PostgreSQL and by ``executemany`` on SQLite. Only created and changed rows are sent,
   and the ``WHERE`` makes even those a no-op if nothing differs, so ``updated_at`` moves
   only on a real change. Given fields replace stored ones, attributes merge (``||`` on
   JSONB, ``json_patch`` on SQLite), and unsubscribed, complained and bounced stay;
5. **audit**: one ``contact_changes`` row per updated contact, with its diff, and one
   ``contact_change_batches`` row for all the contacts the batch created (they share its
   instant as ``created_at``; ``documents.timeline`` shows each its "created" from it);
   stored contacts without a company join their domain's; list **memberships** with a
   consent record (source ``import``) for new memberships only.

On PostgreSQL the stages use their own connections, so the next batch is claimed and
planned while this one is written (the database is the bottleneck of a big import), and
the importer may run two writers side by side. That is safe because claims keep a
batch's emails apart from every other batch's; a writer re-reads, under ``FOR UPDATE``,
the contacts it is about to change, so its audit diff is exact; writers lock companies
in one order; and the importer plans a batch that names external ids only after every
batch before it is written, since ownership of an id can move between batches. On
SQLite one connection does both stages, one after the other.

Every statement here is Core or SQL text, so the tenant session cannot add the
workspace filter: each one sets ``workspace_id`` and filters on it explicitly.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from typing import cast as typed

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Engine,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from postwise.contacts.actions import STICKY_STATUSES
from postwise.contacts.freemail import is_free_mail
from postwise.core.errors import FieldError
from postwise.storage import tenancy
from postwise.storage.tables import (
    Company,
    Consent,
    Contact,
    ContactChange,
    ContactChangeBatch,
    ListMembership,
)
from postwise.storage.types import JSONDoc, UTCDateTime

CONTACTS = typed(Table, Contact.__table__)
COMPANIES = typed(Table, Company.__table__)
CONSENTS = typed(Table, Consent.__table__)
MEMBERSHIPS = typed(Table, ListMembership.__table__)
CHANGES = typed(Table, ContactChange.__table__)
BATCHES = typed(Table, ContactChangeBatch.__table__)

# Contact columns an import may set; absent (NULL) means "keep what is stored".
OPTIONAL_FIELDS = (
    "external_id", "first_name", "last_name", "job_title", "seniority", "department",
    "country", "timezone", "language", "phone",
)  # fmt: skip
COMPANY_FIELDS = ("name", "industry", "employee_count", "size_band", "revenue_band", "country")
MEMBERSHIP_COLUMNS = (
    "workspace_id", "list_id", "contact_id", "status", "consent_id", "created_at", "updated_at",
)  # fmt: skip
STAGED = ("email", "email_domain", *OPTIONAL_FIELDS, "status", "attributes")
# What the planner remembers to skip look-ups, bounded so memory stays flat (about
# 35 MB for claims and 50 MB for the two per-domain caches when full): company claims
# (one per company field: 2^18 covers the 125,000 companies, 250,000 claims, of the
# 1,000,000-row benchmark file; with 50,000 the cache thrashed and nearly every batch
# asked the database again), and per domain its company id and settled field sets.
CLAIM_CACHE = 2**18
DOMAIN_CACHE = 2**17
VALUE_CACHE = 8192  # attribute JSON remembered (bounded)
SCRATCH_BUFFERS_MB = 256
WRITERS = 2  # connections writing batches side by side on PostgreSQL

_SCRATCH = MetaData()
SEEN = Table(
    "pw_import_seen",
    _SCRATCH,
    Column("kind", String(1), primary_key=True),
    # Byte order, cheaper to compare than the database's collation (SQLite's default).
    Column("key", Text().with_variant(Text(collation="C"), "postgresql"), primary_key=True),
    Column("line", BigInteger, nullable=False),
    prefixes=["TEMPORARY"],
)
STAGE = Table(
    "pw_import_contacts",
    _SCRATCH,
    Column("email", Text, nullable=False),
    Column("email_domain", Text, nullable=False),
    *(Column(name, Text) for name in OPTIONAL_FIELDS),
    Column("status", Text, nullable=False),
    Column("attributes", JSONB, nullable=False),
    Column("company_domain", Text),  # the email's domain unless free mail
    Column("changes", JSONB, nullable=False),  # the audit entry's details
    Column("company_id", BigInteger),  # the company of company_domain, when the planner knew it
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DELETE ROWS",
)


@dataclass(slots=True)
class Row:
    """One record that passed validation: stored forms from ``clean_contact``/``clean_company``."""

    line: int
    values: dict[str, Any]
    company: dict[str, Any] | None
    cells: list[str]


@dataclass(slots=True)
class Decision:
    row: Row
    kind: str  # created | updated | unchanged | rejected
    contact_id: int | None = None
    status: str = "subscribed"
    changes: dict[str, Any] = field(default_factory=dict)
    errors: list[FieldError] = field(default_factory=list)
    link_company: bool = False


@dataclass(frozen=True)
class ListTarget:
    """The list every applied row joins (if it is not on it yet), and the consent to record."""

    id: int
    name: str
    double_opt_in: bool
    consent_text: str | None = None


@dataclass
class Prepared:
    """A planned batch: what to write, and what was turned down before writing."""

    decisions: list[Decision]
    rejected: list[Decision]
    company_values: dict[int, list[tuple[str, str, Any]]]  # line -> (domain, field, value)
    staged: list[tuple[Any, ...]] | None = None  # COPY rows of the writes (PostgreSQL)
    company_ids: dict[str, int] = field(default_factory=dict)  # domain -> id (PostgreSQL)


@dataclass
class BatchOutcome:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Decision] = field(default_factory=list)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def diff(current: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """What ``values`` would change on a stored contact, in the audit format of
    ``upsert_contacts``: ``{field: [old, new]}``, attributes as ``[{k: old}, {k: new}]``."""
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key == "attributes":
            stored = current.attributes or {}
            if {**stored, **value} != stored:
                changed = {k: v for k, v in value.items() if stored.get(k) != v}
                changes["attributes"] = [{k: stored.get(k) for k in changed}, changed]
            continue
        old = getattr(current, key)
        if old != value:
            changes[key] = [_jsonable(old), _jsonable(value)]
    return changes


@dataclass(frozen=True)
class _New:
    """A contact this batch creates: it owns its external id for the rows after it."""

    email: str


def plan(rows: Sequence[Row], stored: Iterable[Any]) -> list[Decision]:
    """Decide each row as ``upsert_contacts`` does, given the stored contacts that share an
    email or an external id with the batch. Rows must have distinct emails."""
    existing: dict[str, Any] = {c.email: c for c in stored}
    by_external: dict[str, Any] = {c.external_id: c for c in existing.values() if c.external_id}
    decisions: list[Decision] = []
    for row in rows:
        values = row.values
        contact = existing.get(values["email"])
        ext = values.get("external_id")
        owner = by_external.get(ext) if ext else None
        if owner is not None and owner is not contact:
            decisions.append(
                Decision(
                    row,
                    "rejected",
                    errors=[
                        FieldError(
                            "external_id",
                            "external_id_taken",
                            f"external_id {ext!r} belongs to {owner.email}",
                        )
                    ],
                )
            )
            continue
        if contact is None:
            decisions.append(Decision(row, "created", status=values.get("status") or "subscribed"))
            if ext:  # (emails are distinct: no later row of the batch looks this one up)
                by_external[ext] = _New(values["email"])
            continue
        new_status = values.get("status")
        if new_status and new_status != contact.status and contact.status in STICKY_STATUSES:
            decisions.append(
                Decision(
                    row,
                    "rejected",
                    errors=[
                        FieldError(
                            "status",
                            "status_locked",
                            f"the contact is {contact.status}; only the person can reverse "
                            "that (a confirmed list subscription), not an import",
                        )
                    ],
                )
            )
            continue
        changes = diff(contact, values)
        decisions.append(
            Decision(
                row,
                "updated" if changes else "unchanged",
                contact_id=contact.id,
                status=new_status or contact.status,
                changes=changes,
                link_company=contact.company_id is None,
            )
        )
        if changes and ext:
            by_external[ext] = contact
    return decisions


class _Statements:
    """What both stages share: the session, its workspace and dialect-specific SQL."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.ws = tenancy.workspace_of(session)
        self.postgres = session.get_bind().dialect.name == "postgresql"

    def _in(self, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
        """``column IN values`` with one bound parameter whatever the count: a JSON array,
        which both drivers pass as one string (no parameter limits, no per-item cost)."""
        items = json.dumps(list(values))
        if self.postgres:
            rows: Any = func.jsonb_array_elements_text(cast(literal(items), JSONB))
            value = rows.table_valued("value").c.value
            if column.type.python_type is int:
                value = cast(value, BigInteger)
            return column.in_(select(value))
        return column.in_(select(func.json_each(literal(items)).table_valued("value").c.value))

    def _stored(
        self, emails: Sequence[str], externals: Sequence[str] = (), *, lock: bool = False
    ) -> list[Any]:
        c = CONTACTS.c
        match = self._in(c.email, emails)
        if externals:
            match = or_(match, self._in(c.external_id, externals))
        stmt = (
            select(c.id, c.email, c.company_id, *(c[name] for name in OPTIONAL_FIELDS))
            .add_columns(c.email_domain, c.status, c.attributes)
            .where(c.workspace_id == self.ws, match)
        )
        if lock:
            stmt = stmt.with_for_update()
        return list(self.session.execute(stmt))

    def _plan(self, rows: Sequence[Row], *, lock: bool = False) -> list[Decision]:
        externals = [row.values["external_id"] for row in rows if row.values.get("external_id")]
        return plan(rows, self._stored([row.values["email"] for row in rows], externals, lock=lock))

    def _companies(self, domains: set[str], now: datetime) -> dict[str, int]:
        """Create the companies of these business domains if missing; returns their ids
        (domain -> id) for the upsert."""
        if not domains:
            return {}
        wanted = sorted(domains)
        if self.postgres:
            # The SELECT half sees the companies from before the INSERT, which returns
            # the ones it adds: together, every domain once.
            found = self.session.execute(
                text(
                    "WITH wanted AS (SELECT jsonb_array_elements_text(CAST(:domains AS jsonb)) "
                    "AS domain), added AS (INSERT INTO companies (workspace_id, domain, "
                    "attributes, created_at, updated_at) SELECT :ws, domain, '{}', :now, :now "
                    "FROM wanted ON CONFLICT (workspace_id, domain) DO NOTHING "
                    "RETURNING domain, id) "
                    "SELECT domain, id FROM added UNION ALL SELECT c.domain, c.id "
                    "FROM companies AS c JOIN wanted AS w ON c.domain = w.domain "
                    "WHERE c.workspace_id = :ws"
                ),
                {"ws": self.ws, "domains": json.dumps(wanted), "now": now},
            )
            return {domain: int(company_id) for domain, company_id in found}
        t = COMPANIES.c

        def known(names: Sequence[str]) -> dict[str, int]:
            found = self.session.execute(
                select(t.domain, t.id).where(t.workspace_id == self.ws, self._in(t.domain, names))
            )
            return {domain: int(company_id) for domain, company_id in found}

        ids = known(wanted)
        missing = [d for d in wanted if d not in ids]
        if missing:
            self.session.execute(
                sqlite.insert(COMPANIES).on_conflict_do_nothing(
                    index_elements=["workspace_id", "domain"]
                ),
                [
                    {
                        "workspace_id": self.ws,
                        "domain": domain,
                        "attributes": {},
                        "created_at": now,
                        "updated_at": now,
                    }
                    for domain in missing
                ],
            )
            ids.update(known(missing))
        return ids


class Planner(_Statements):
    """Claims and plans batches; owns the import's claims table (a temporary table)."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.batches = 0
        self._claimed: dict[str, int] = {}  # company claim -> the line that owns it
        self._company_ids: dict[str, int] = {}  # domain -> company id (bounded)
        # (domain, company fields of a row) -> the last line owning one of those claims:
        # a later row with the same fields owns none, and skips the claims (bounded).
        self._settled: dict[tuple[str, ...], int] = {}

    def prepare(self, rows: Sequence[Row], target: ListTarget | None, now: datetime) -> Prepared:
        """Claim, read and plan one batch inside the session's current transaction.

        On PostgreSQL this also does the writer's idempotent groundwork, so that it runs
        while the writer is busy with the batch before: missing companies are created,
        statistics refreshed and the rows for ``COPY`` built.
        """
        if self.postgres:
            self.batches += 1
            if self.batches & (self.batches - 1) == 0:  # 1, 2, 4, 8, ...
                self._refresh_statistics(target)
        rows, duplicates = self._claim_emails(rows)
        decisions = self._plan(rows) if rows else []
        rejected = duplicates + [d for d in decisions if d.kind == "rejected"]
        applied = [d for d in decisions if d.kind != "rejected"]
        prepared = Prepared(
            decisions=applied,
            rejected=rejected,
            company_values=self._company_claims(rows),
        )
        if self.postgres and applied:
            known = self._company_ids
            domains = _business(applied)
            ids = {domain: known[domain] for domain in domains if domain in known}
            found = self._companies(domains.difference(ids), now)
            _remember(known, found, DOMAIN_CACHE)
            prepared.company_ids = {**ids, **found}
            prepared.staged = _copy_rows(applied, prepared.company_ids)
        return prepared

    def _refresh_statistics(self, target: ListTarget | None) -> None:
        """ANALYZE the tables an import grows, after batches 1, 2, 4, 8, ...

        Autovacuum lags behind a bulk load, and with stale statistics PostgreSQL takes a
        fresh workspace for a tiny one and filters thousands of rows per look-up instead
        of using the keys: the import would slow down quadratically. Sampling is cheap
        and the doubling keeps it to a few dozen runs for any file. Without ownership of
        a table PostgreSQL skips it with a warning; nothing fails.
        """
        # Only the columns the import's look-ups filter on: the row counts are what go
        # stale, and a whole-table ANALYZE of contacts (JSON attributes, names) costs
        # four times as much (235 ms against 55 at 100,000 contacts, measured).
        tables = [
            "contacts (workspace_id, email, external_id, status)",
            "companies (workspace_id, domain)",
            SEEN.name,
        ]
        if target is not None:
            tables.append("list_memberships (workspace_id, list_id, contact_id)")
        self.session.execute(text(f"ANALYZE {', '.join(tables)}"))

    def _claim(self, kind: str, items: Sequence[tuple[str, int]]) -> dict[str, int]:
        """Record first sightings of distinct keys; returns the earlier line of each key
        that an earlier batch already claimed (the rest now belong to ``items``)."""
        if not items:
            return {}
        params = {"kind": kind, "items": json.dumps(items)}
        if self.postgres:
            # Usually every key is new: count what went in, and look up the earlier
            # lines only if something did not (a key an item claims again on its own
            # line, as a retried row does, is not "earlier").
            added = self.session.scalar(
                text(
                    """
                    WITH added AS (
                        INSERT INTO pw_import_seen (kind, key, line)
                        SELECT :kind, value ->> 0, CAST(value ->> 1 AS bigint)
                        FROM jsonb_array_elements(CAST(:items AS jsonb))
                        ON CONFLICT DO NOTHING
                        RETURNING 1
                    )
                    SELECT count(*) FROM added
                    """
                ),
                params,
            )
            if added == len(items):
                return {}
            found = self.session.execute(
                text(
                    """
                    SELECT s.key, s.line FROM pw_import_seen AS s
                    JOIN jsonb_array_elements(CAST(:items AS jsonb)) AS i
                      ON s.kind = :kind AND s.key = i.value ->> 0
                    WHERE s.line <> CAST(i.value ->> 1 AS bigint)
                    """
                ),
                params,
            )
            return {key: int(line) for key, line in found}
        found = self.session.execute(
            select(SEEN.c.key, SEEN.c.line).where(
                SEEN.c.kind == kind, self._in(SEEN.c.key, [key for key, _ in items])
            )
        )
        earlier = {key: int(line) for key, line in found}
        self.session.execute(
            text(
                "INSERT INTO pw_import_seen (kind, key, line) "
                "SELECT :kind, json_extract(value, '$[0]'), json_extract(value, '$[1]') "
                "FROM json_each(:items) WHERE true ON CONFLICT DO NOTHING"
            ),
            params,
        )
        return earlier

    def _claim_emails(self, rows: Sequence[Row]) -> tuple[list[Row], list[Decision]]:
        first: dict[str, Row] = {}
        for row in rows:
            first.setdefault(row.values["email"], row)
        earlier = self._claim("e", [(email, row.line) for email, row in first.items()])
        kept: list[Row] = []
        duplicates: list[Decision] = []
        for row in rows:
            email = row.values["email"]
            line = earlier.get(email) or first[email].line
            if line == row.line:
                kept.append(row)
                continue
            duplicates.append(
                Decision(
                    row,
                    "rejected",
                    errors=[
                        FieldError(
                            "email",
                            "duplicate_email",
                            f"{email} already appears on line {line} of this file; "
                            "the first row for an address wins",
                        )
                    ],
                )
            )
        return kept, duplicates

    def _company_claims(self, rows: Sequence[Row]) -> dict[int, list[tuple[str, str, Any]]]:
        """Company columns: per company and field the first row of the file that passed
        validation owns the value, whether or not that row is finally applied. So a file
        that disagrees with itself imports to the same state every time, and a row
        retried later (see the importer) still finds its own values."""
        proposed: dict[str, tuple[int, str, str, Any]] = {}
        settled = self._settled
        fresh: dict[tuple[str, ...], None] = {}
        for row in rows:
            company = row.company
            if not company:
                continue
            domain = row.values["email_domain"]
            if "attributes" not in company:
                signature = (domain, *company)
                last = settled.get(signature)
                if last is not None and row.line > last:
                    continue  # each of these fields is owned by an earlier line
                fresh[signature] = None
            if _free_mail(domain):
                continue
            for name, value in company.items():
                if name != "attributes":
                    claim = name + "\x1f" + domain
                    if claim not in proposed:
                        proposed[claim] = (row.line, name, domain, value)
                    continue
                for key, item in value.items():
                    target = "attributes." + key
                    claim = target + "\x1f" + domain
                    if claim not in proposed:
                        proposed[claim] = (row.line, target, domain, item)
        if not proposed:
            return {}
        unknown = [
            (claim, line) for claim, (line, *_) in proposed.items() if claim not in self._claimed
        ]
        earlier = self._claim("c", unknown)
        owners = {claim: earlier.get(claim, line) for claim, line in unknown}
        claimed = self._claimed
        lasts: dict[tuple[str, ...], int] = {}
        for signature in fresh:
            domain = signature[0]
            lines = [
                owners.get(c, claimed.get(c)) for c in (f + "\x1f" + domain for f in signature[1:])
            ]
            if None not in lines:
                lasts[signature] = max(typed(list[int], lines))
        _remember(settled, lasts, DOMAIN_CACHE)
        _remember(claimed, owners)
        owned: dict[int, list[tuple[str, str, Any]]] = {}
        for claim, (line, target, domain, value) in proposed.items():
            if owners.get(claim, self._claimed.get(claim)) == line:
                owned.setdefault(line, []).append((domain, target, value))
        return owned


class Writer(_Statements):
    """Writes planned batches: companies, contacts, audit rows, list memberships."""

    # True while other writers may run at the same time (the importer says when not).
    side_by_side = True

    def write(
        self,
        prepared: Prepared,
        target: ListTarget | None,
        now: datetime,
        *,
        source: str = "import",
        final: bool = True,
    ) -> BatchOutcome:
        """Apply one batch inside the session's current transaction (not committed here).

        Batches before the ``final`` one commit without waiting for the WAL flush on
        PostgreSQL (the writers' connections have ``synchronous_commit`` off, see
        ``open_batches``): WAL is written in order, so the final, synchronous commit makes
        every earlier batch durable too. A crash before it can lose a few recent batches
        of an import that never finished, which re-running restores (imports are
        idempotent).
        """
        if self.postgres and final:
            self.session.execute(text("SET LOCAL synchronous_commit TO ON"))
        outcome = BatchOutcome(rejected=list(prepared.rejected))
        applied = prepared.decisions
        staged = prepared.staged
        if self.postgres and any(d.kind == "updated" for d in applied):
            # Lock what will change and plan again on the locked rows: the audit diff is
            # exact even if someone else wrote since the planner read.
            decisions = self._plan([d.row for d in applied], lock=True)
            outcome.rejected += [d for d in decisions if d.kind == "rejected"]
            applied = [d for d in decisions if d.kind != "rejected"]
            staged = _copy_rows(applied, prepared.company_ids)
        if not applied:
            return outcome
        business = _business(applied)
        companies = {} if self.postgres else self._companies(business, now)
        updates: dict[str, dict[str, Any]] = {}
        for decision in applied:
            for domain, name, value in prepared.company_values.get(decision.row.line, ()):
                values = updates.setdefault(domain, {"attributes": {}})
                if name.startswith("attributes."):
                    values["attributes"][name.removeprefix("attributes.")] = value
                else:
                    values[name] = value
        self._update_companies(updates, business, now)
        writes = [d for d in applied if d.kind in ("created", "updated")]
        written = (
            self._upsert(writes, staged or [], companies, now, source, target) if writes else []
        )
        self._link_companies(
            [d for d in applied if d.link_company and d.row.values["email_domain"] in business]
        )
        if target is not None:
            known = [d.contact_id for d in applied if d.contact_id is not None]
            self._subscribe(target, sorted({*known, *written}), now)
        kinds = Counter(d.kind for d in applied)
        outcome.created, outcome.updated = kinds["created"], kinds["updated"]
        outcome.unchanged = kinds["unchanged"]
        return outcome

    def _update_companies(
        self, updates: Mapping[str, Mapping[str, Any]], business: set[str], now: datetime
    ) -> None:
        updates = {domain: values for domain, values in updates.items() if domain in business}
        if not updates:
            return
        if self.postgres:
            self._update_companies_postgres(updates, now)
            return
        t = COMPANIES.c
        new = {
            name: func.coalesce(bindparam(f"b_{name}", type_=t[name].type), t[name])
            for name in COMPANY_FIELDS
        }
        new["attributes"] = self._merge(t.attributes, bindparam("b_attributes", type_=JSONDoc))
        stmt = (
            update(COMPANIES)
            .where(
                t.workspace_id == self.ws,
                t.domain == bindparam("b_domain", type_=t.domain.type),
                self._differs([t[name] for name in new], list(new.values())),
            )
            .values(**new, updated_at=now)
        )
        self.session.execute(
            stmt,
            [
                {
                    "b_domain": domain,
                    **{f"b_{name}": values.get(name) for name in (*COMPANY_FIELDS, "attributes")},
                }
                for domain, values in updates.items()
            ],
        )

    def _update_companies_postgres(
        self, updates: Mapping[str, Mapping[str, Any]], now: datetime
    ) -> None:
        """One statement for the whole batch; the rows travel as one JSON document."""
        columns = {
            "name": "text", "industry": "text", "employee_count": "integer",
            "size_band": "text", "revenue_band": "text", "country": "text",
            "attributes": "jsonb",
        }  # fmt: skip
        if self.side_by_side:
            # Writers running side by side may touch the same company: lock in one order.
            self.session.execute(
                text(
                    "SELECT id FROM companies WHERE workspace_id = :ws AND domain IN "
                    "(SELECT jsonb_array_elements_text(CAST(:domains AS jsonb))) "
                    "ORDER BY domain FOR NO KEY UPDATE"
                ),
                {"ws": self.ws, "domains": json.dumps(sorted(updates))},
            )
        new = {name: f"COALESCE(v.{name}, c.{name})" for name in columns}
        new["attributes"] = "c.attributes || v.attributes"
        record = ", ".join(f"{name} {kind}" for name, kind in columns.items())
        self.session.execute(
            text(
                "UPDATE companies AS c SET "
                + ", ".join(f"{name} = {value}" for name, value in new.items())
                + ", updated_at = :now "
                f"FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(domain text, {record}) "
                "WHERE c.workspace_id = :ws AND c.domain = v.domain "
                f"AND ({', '.join(f'c.{name}' for name in columns)}) "
                f"IS DISTINCT FROM ({', '.join(new.values())})"
            ),
            {
                "ws": self.ws,
                "now": now,
                "rows": json.dumps([{"domain": d, **values} for d, values in updates.items()]),
            },
        )

    def _merge(self, stored: Any, new: Any) -> Any:
        if self.postgres:
            return stored.op("||")(new)
        return func.json_patch(stored, new)

    def _differs(self, stored: list[Any], new: list[Any]) -> ColumnElement[bool]:
        """``(stored row) IS DISTINCT FROM (new row)``; SQLite compares JSON as minified text."""
        if self.postgres:
            return tuple_(*stored).is_distinct_from(tuple_(*new))
        return or_(
            *(
                (func.json(s) if s.key == "attributes" else s).is_distinct_from(n)
                for s, n in zip(stored, new, strict=True)
            )
        )

    def _upsert(
        self,
        writes: Sequence[Decision],
        staged: Sequence[tuple[Any, ...]],
        companies: Mapping[str, int],
        now: datetime,
        source: str,
        target: ListTarget | None,
    ) -> list[int]:
        """Created and changed rows and their audit entries; returns the ids written
        (on PostgreSQL only when a list needs them)."""
        c = CONTACTS.c
        stamp = literal(now, UTCDateTime())
        if self.postgres:
            self._copy(f"COPY {STAGE.name} ({', '.join(STAGE.c.keys())}) FROM STDIN", staged)
            t = COMPANIES.c
            looked_up = (
                select(t.id)
                .where(t.workspace_id == self.ws, t.domain == STAGE.c.company_domain)
                .scalar_subquery()
            )
            # Looked up only for a domain the planner had no id for (COALESCE is lazy).
            company = func.coalesce(STAGE.c.company_id, looked_up)
            rows = select(
                literal(self.ws, BigInteger),
                *(STAGE.c[name] for name in STAGED),
                company,
                stamp,
                stamp,
            )
            stmt: Any = postgresql.insert(CONTACTS).from_select(
                ["workspace_id", *STAGED, "company_id", "created_at", "updated_at"], rows
            )
        else:
            stmt = sqlite.insert(CONTACTS)
        stmt = self._on_conflict(stmt)
        if self.postgres:
            up = stmt.returning(
                c.id, c.email, literal_column("xmax = 0", Boolean).label("created")
            ).cte("up")
            ws = literal(self.ws, BigInteger)
            audit = insert(CHANGES).from_select(
                ["workspace_id", "contact_id", "at", "kind", "source", "changes"],
                select(ws, up.c.id, stamp, literal("updated"), literal(source), STAGE.c.changes)
                .select_from(up.join(STAGE, STAGE.c.email == up.c.email))
                .where(~up.c.created),
            )
            batch = insert(BATCHES).from_select(
                ["workspace_id", "at", "kind", "source", "contacts"],
                select(ws, stamp, literal("created"), literal(source), func.count())
                .select_from(up)
                .where(up.c.created)
                .having(func.count() > 0),
            )
            written = select(up.c.id).add_cte(audit.cte("audit"), batch.cte("batch"))
            return [int(contact_id) for contact_id in self.session.scalars(written)]
        self.session.execute(
            stmt,
            [
                {
                    "workspace_id": self.ws,
                    **{name: d.row.values.get(name) for name in STAGED},
                    "status": d.status,
                    "attributes": d.row.values.get("attributes") or {},
                    "company_id": companies.get(d.row.values["email_domain"]),
                    "created_at": now,
                    "updated_at": now,
                }
                for d in writes
            ],
        )
        created = [d.row.values["email"] for d in writes if d.contact_id is None]
        if created and target is not None:  # the list needs their ids
            query = select(c.email, c.id).where(
                c.workspace_id == self.ws, self._in(c.email, created)
            )
            found = {email: int(contact_id) for email, contact_id in self.session.execute(query)}
            for decision in writes:
                if decision.contact_id is None:
                    decision.contact_id = int(found[decision.row.values["email"]])
        updated = [d for d in writes if d.kind == "updated"]
        if updated:
            self.session.execute(
                insert(CHANGES),
                [
                    {
                        "workspace_id": self.ws,
                        "contact_id": d.contact_id,
                        "at": now,
                        "kind": "updated",
                        "source": source,
                        "changes": d.changes,
                    }
                    for d in updated
                ],
            )
        if created:
            self.session.execute(
                insert(BATCHES).values(
                    workspace_id=self.ws,
                    at=now,
                    kind="created",
                    source=source,
                    contacts=len(created),
                )
            )
        return [d.contact_id for d in writes if d.contact_id is not None]

    def _on_conflict(self, stmt: Any) -> Any:
        """The update half of the upsert, shared by both databases: given fields replace
        stored ones, attributes merge, a sticky status stays, and nothing is written
        (``updated_at`` included) unless a value differs."""
        c, ex = CONTACTS.c, stmt.excluded
        new: dict[str, Any] = {name: func.coalesce(ex[name], c[name]) for name in OPTIONAL_FIELDS}
        new["status"] = case((c.status.in_(_sticky()), c.status), else_=ex.status)
        new["attributes"] = self._merge(c.attributes, ex.attributes)
        return stmt.on_conflict_do_update(
            index_elements=["workspace_id", "email"],
            set_={
                **new,
                "company_id": func.coalesce(c.company_id, ex.company_id),
                "updated_at": ex.updated_at,
            },
            where=self._differs([c[name] for name in new], list(new.values())),
        )

    def _copy(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        """``COPY ... FROM STDIN`` on the session's own connection (PostgreSQL only)."""
        driver: Any = self.session.connection().connection.driver_connection
        with driver.cursor() as cursor, cursor.copy(sql) as copy:
            write_row = copy.write_row
            for row in rows:
                write_row(row)

    def _link_companies(self, decisions: Sequence[Decision]) -> None:
        """Stored contacts without a company join their domain's (no audit, as the ORM path)."""
        if not decisions:
            return
        c, t = CONTACTS.c, COMPANIES.c
        company = (
            select(t.id)
            .where(t.workspace_id == self.ws, t.domain == c.email_domain)
            .scalar_subquery()
        )
        self.session.execute(
            update(CONTACTS)
            .where(
                c.workspace_id == self.ws,
                c.company_id.is_(None),
                self._in(c.id, [d.contact_id for d in decisions]),
            )
            .values(company_id=company)
        )

    def _subscribe(self, target: ListTarget, contact_ids: Sequence[int], now: datetime) -> None:
        """New memberships only, each with its consent record and a timeline entry.

        As in ``lists.subscribe`` for source ``import``: a double-opt-in list holds new
        members as ``pending``, and nobody who left the list is put back. Contacts whose
        own status is sticky (unsubscribed, complained, bounced) are not added at all.
        """
        if not contact_ids:
            return
        status = "pending" if target.double_opt_in else "subscribed"
        changes = {"list_id": target.id, "list": target.name}
        if self.postgres:
            self._subscribe_postgres(target, contact_ids, now, status, changes)
            return
        c, m, k = CONTACTS.c, MEMBERSHIPS.c, CONSENTS.c
        stamp = literal(now, UTCDateTime())
        ws = literal(self.ws, BigInteger)
        list_id = literal(target.id, BigInteger)
        member = exists().where(
            m.workspace_id == self.ws, m.list_id == target.id, m.contact_id == c.id
        )
        self.session.execute(
            insert(CONSENTS).from_select(
                ["workspace_id", "contact_id", "list_id", "source", "consent_text", "recorded_at"],
                select(
                    ws, c.id, list_id, literal("import"), literal(target.consent_text, Text), stamp
                ).where(
                    c.workspace_id == self.ws,
                    self._in(c.id, contact_ids),
                    c.status.not_in(_sticky()),
                    ~member,
                ),
            )
        )
        # Under SQLite's write lock nobody else writes: "this list, this instant" is ours.
        fresh = and_(
            k.workspace_id == self.ws,
            k.list_id == target.id,
            k.source == "import",
            k.recorded_at == now,
            self._in(k.contact_id, contact_ids),
        )
        self.session.execute(
            insert(MEMBERSHIPS).from_select(
                MEMBERSHIP_COLUMNS,
                select(ws, list_id, k.contact_id, literal(status), k.id, stamp, stamp).where(fresh),
            )
        )
        self.session.execute(
            insert(CHANGES).from_select(
                ["workspace_id", "contact_id", "at", "kind", "source", "changes"],
                select(
                    ws,
                    k.contact_id,
                    stamp,
                    literal(status),
                    literal("import"),
                    literal(changes, JSONDoc),
                ).where(fresh),
            )
        )

    def _subscribe_postgres(
        self,
        target: ListTarget,
        contact_ids: Sequence[int],
        now: datetime,
        status: str,
        changes: dict[str, Any],
    ) -> None:
        """One statement, driven by primary keys only (plans stay good on fresh tables).

        Consent ids are drawn first, so the membership insert can decide what is new
        (``ON CONFLICT DO NOTHING``) and the consents follow only for those.
        """
        self.session.execute(
            text(
                """
                WITH candidates AS (
                    SELECT c.id AS contact_id,
                           nextval(pg_get_serial_sequence('consents', 'id')) AS consent_id
                    FROM contacts AS c
                    WHERE c.workspace_id = :ws AND c.id IN (
                        SELECT CAST(value AS bigint)
                        FROM jsonb_array_elements_text(CAST(:ids AS jsonb))
                      )
                      AND c.status NOT IN ('bounced', 'complained', 'unsubscribed')
                ), members AS (
                    INSERT INTO list_memberships
                        (workspace_id, list_id, contact_id, status, consent_id,
                         created_at, updated_at)
                    SELECT :ws, :list_id, contact_id, :status, consent_id, :now, :now
                    FROM candidates
                    ON CONFLICT (list_id, contact_id) DO NOTHING
                    RETURNING contact_id, consent_id
                ), records AS (
                    INSERT INTO consents
                        (id, workspace_id, contact_id, list_id, source, consent_text, recorded_at)
                    SELECT consent_id, :ws, contact_id, :list_id, 'import', :consent_text, :now
                    FROM members
                )
                INSERT INTO contact_changes (workspace_id, contact_id, at, kind, source, changes)
                SELECT :ws, contact_id, :now, :status, 'import', CAST(:changes AS jsonb)
                FROM members
                """
            ),
            {
                "ws": self.ws,
                "ids": json.dumps(list(contact_ids)),
                "list_id": target.id,
                "status": status,
                "now": now,
                "consent_text": target.consent_text,
                "changes": json.dumps(changes),
            },
        )


def _remember(cache: dict[Any, Any], entries: Mapping[Any, Any], limit: int = CLAIM_CACHE) -> None:
    """Keep what is known already (company claims' owners, companies created), bounded
    so memory stays flat: forgetting an entry only costs a look-up that answers the same."""
    if len(cache) > limit:
        for stale in list(cache)[: limit // 2]:
            del cache[stale]
    cache.update(entries)


def _business(decisions: Iterable[Decision]) -> set[str]:
    """The email domains of these rows that belong to companies (not free mail)."""
    domains = {d.row.values["email_domain"] for d in decisions}
    return {domain for domain in domains if not _free_mail(domain)}


def _copy_rows(
    decisions: Iterable[Decision], company_ids: Mapping[str, int]
) -> list[tuple[Any, ...]]:
    """The staging rows of the created and updated ones (see ``STAGE``)."""
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    fields = OPTIONAL_FIELDS
    for d in decisions:
        if d.kind != "created" and d.kind != "updated":
            continue
        values = d.row.values
        get = values.get
        domain = values["email_domain"]
        attributes = get("attributes")
        append(
            (
                values["email"],
                domain,
                *map(get, fields),
                d.status,
                _json(attributes) if attributes else "{}",
                None if _free_mail(domain) else domain,
                json.dumps(d.changes) if d.changes else "{}",
                company_ids.get(domain),
            )
        )
    return rows


_JSON_CACHE: dict[tuple[Any, ...], str] = {}
# Asked several times per row; a set look-up already (an LRU of 8,192 cost more than it
# saved once a file names more business domains than that).
_free_mail = is_free_mail


def _json(attributes: dict[str, Any]) -> str:
    """``json.dumps`` of a row's attributes; the few combinations a file repeats are
    encoded once (bounded, and only for flat values, which hash). The key holds the
    types, since ``1``, ``1.0`` and ``True`` are equal keys but different JSON."""
    values = attributes.values()
    try:
        key = (*attributes, *map(type, values), *values)
        found = _JSON_CACHE.get(key)
    except TypeError:  # a list value: not hashable, not remembered
        return json.dumps(attributes)
    if found is None:
        if len(_JSON_CACHE) >= VALUE_CACHE:
            _JSON_CACHE.clear()
        found = _JSON_CACHE[key] = json.dumps(attributes)
    return found


def _sticky() -> list[Any]:
    # Plain bound values, not an expanding IN: the upsert also runs as executemany.
    return [literal(status) for status in sorted(STICKY_STATUSES)]


@contextmanager
def open_batches(
    engine: Engine, workspace_id: int, *, writers: int = WRITERS
) -> Iterator[tuple[Planner, list[Writer]]]:
    """A planner and writers for one import, on connections held until the end.

    PostgreSQL: one connection for the planner, whose claims table lives there (it is
    closed afterwards, which drops the table), and ``writers`` more, so batches are
    planned and written side by side. SQLite: one connection does everything (one
    write lock); the scratch table is dropped at the end.
    """
    postgres = engine.dialect.name == "postgresql"
    with ExitStack() as stack:
        first = stack.enter_context(engine.connect())
        planner_session = _session(first, workspace_id)
        stack.callback(_close, planner_session, first, postgres)
        with planner_session.begin():
            if postgres:
                _room_for_scratch(planner_session)
                # Claims and idempotent inserts: nothing the planner commits needs to
                # survive a crash, so it never waits for the WAL flush.
                planner_session.execute(text("SET synchronous_commit TO OFF"))
            _drop_scratch_tables(planner_session)
            SEEN.create(planner_session.connection())
        if not postgres:
            yield Planner(planner_session), [Writer(planner_session)]
            return
        sessions = []
        for _ in range(writers):
            connection = stack.enter_context(engine.connect())
            session = _session(connection, workspace_id)
            stack.callback(_close, session, connection, postgres)
            with session.begin():
                session.execute(text("SET synchronous_commit TO OFF"))  # see Writer.write
                session.execute(text(f"DROP TABLE IF EXISTS pg_temp.{STAGE.name}"))
                STAGE.create(session.connection())
            sessions.append(session)
        yield Planner(planner_session), [Writer(session) for session in sessions]


def _close(session: Session, connection: Any, postgres: bool) -> None:
    session.rollback()
    if postgres:
        connection.invalidate()  # ends the backend, and its scratch tables with it
    else:
        _drop_scratch(session)
    session.close()


def _session(connection: Any, workspace_id: int) -> Session:
    session = Session(bind=connection, expire_on_commit=False)
    tenancy.bind(session, workspace_id)
    return session


def _room_for_scratch(session: Session) -> None:
    """Give the claims table memory (PostgreSQL's default is 8 MB of temporary buffers,
    about 80,000 addresses; past that every claim reads and writes temporary files).
    Allowed only before a session first touches a temporary table, hence the savepoint."""
    try:
        with session.begin_nested():
            session.execute(text(f"SET temp_buffers = '{SCRATCH_BUFFERS_MB}MB'"))
    except DBAPIError:
        pass


def _drop_scratch_tables(session: Session) -> None:
    schema = "pg_temp" if session.get_bind().dialect.name == "postgresql" else "temp"
    session.execute(text(f"DROP TABLE IF EXISTS {schema}.{SEEN.name}"))


def _drop_scratch(session: Session) -> None:
    """Leave the pooled connection as we found it, or throw it away if that fails."""
    try:
        with session.begin():
            _drop_scratch_tables(session)
    except Exception:
        session.rollback()
        session.connection().invalidate()
