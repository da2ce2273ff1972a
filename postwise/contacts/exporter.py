"""CSV export of contacts, streamed page by page and safe to open in a spreadsheet.

Cells are user data, and a spreadsheet runs a cell that starts with ``=``, ``+``,
``-`` or ``@`` (or a tab or carriage return before one) as a formula: a CSV export is a
classic injection vector (OWASP "CSV Injection"). Following OWASP's guidance every such
cell gets a leading apostrophe, which spreadsheets show as text and do not evaluate.
The importer strips exactly that apostrophe again (``unguard_cell``), so an export
imports back unchanged.

The columns are the importer's own targets (``email``, ``first_name``, ``company.name``,
``attributes.seats`` ...), so an exported file needs no ``--map`` to be imported again.
Only declared attributes are exported, one column each; list attributes are joined
with ``;`` as the importer splits them.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from postwise.contacts.attributes import AttributeSchema, AttributeType, Entity
from postwise.contacts.fields import CONTACT_STATUSES
from postwise.core.errors import NotFound, ValidationFailed
from postwise.storage import tenancy
from postwise.storage.tables import (
    Company,
    Contact,
    ListMembership,
    MailingList,
    Segment,
    SegmentMembership,
)

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
PAGE_SIZE = 1000

CONTACT_EXPORT_FIELDS = (
    "email", "external_id", "first_name", "last_name", "job_title", "seniority",
    "department", "country", "timezone", "language", "phone", "status",
)  # fmt: skip
COMPANY_EXPORT_FIELDS = (
    "domain", "name", "industry", "employee_count", "size_band", "revenue_band", "country",
)  # fmt: skip
TRAILING_FIELDS = ("id", "created_at", "updated_at")


def guard_cell(value: str) -> str:
    """The cell as a spreadsheet will show it as text, never run it as a formula."""
    if value and value[0] in FORMULA_TRIGGERS:
        return "'" + value
    return value


def unguard_cell(value: str) -> str:
    """Undo ``guard_cell``: an apostrophe before a formula trigger is ours, not data."""
    if len(value) > 1 and value[0] == "'" and value[1] in FORMULA_TRIGGERS:
        return value[1:]
    return value


def _text(value: Any, kind: AttributeType | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and kind is AttributeType.LIST:
        return ";".join(str(item) for item in value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


@dataclass(frozen=True)
class ExportFilter:
    list_name: str | None = None
    status: str | None = None
    segment_id: int | None = None  # current members of this segment (docs/segments.md)


@dataclass(frozen=True)
class Export:
    """A checked export request: the filter resolved and the attribute columns fixed.

    Built eagerly by ``prepare_export`` so that a bad filter fails before the first
    byte is sent; the rows are produced lazily by ``rows`` and ``csv_chunks``.
    """

    engine: Engine
    workspace_id: int
    status: str | None
    list_id: int | None
    segment_id: int | None
    attributes: tuple[tuple[str, AttributeType], ...]
    company_attributes: tuple[tuple[str, AttributeType], ...]

    def header(self) -> list[str]:
        return [
            *CONTACT_EXPORT_FIELDS,
            *(f"company.{name}" for name in COMPANY_EXPORT_FIELDS),
            *(f"company.attributes.{name}" for name, _ in self.company_attributes),
            *(f"attributes.{name}" for name, _ in self.attributes),
            *TRAILING_FIELDS,
        ]

    def rows(self) -> Iterator[list[str]]:
        """Header, then one guarded row per contact; one short transaction per page.

        Keyset pages (by id) keep memory flat and never hold a transaction open while
        the consumer (an HTTP client, a slow disk) takes its time.
        """
        yield self.header()
        after = 0
        while True:
            page = self._page(after)
            for contact, company in page:
                yield [guard_cell(cell) for cell in self._cells(contact, company)]
            if len(page) < PAGE_SIZE:
                return
            after = page[-1][0].id

    def csv_chunks(self) -> Iterator[str]:
        """The export as CSV text in chunks of a few hundred rows, for files and HTTP alike."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        for count, row in enumerate(self.rows(), start=1):
            writer.writerow(row)
            if count % 500 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    def _page(self, after: int) -> list[Any]:
        with Session(self.engine) as session:
            tenancy.bind(session, self.workspace_id)
            stmt = (
                select(Contact, Company)
                .outerjoin(Company, Company.id == Contact.company_id)
                .where(Contact.id > after)
                .order_by(Contact.id)
                .limit(PAGE_SIZE)
            )
            if self.status is not None:
                stmt = stmt.where(Contact.status == self.status)
            if self.list_id is not None:
                stmt = stmt.where(
                    Contact.id.in_(
                        select(ListMembership.contact_id).where(
                            ListMembership.list_id == self.list_id
                        )
                    )
                )
            if self.segment_id is not None:
                stmt = stmt.where(
                    Contact.id.in_(
                        select(SegmentMembership.contact_id).where(
                            SegmentMembership.segment_id == self.segment_id,
                            SegmentMembership.exited_at.is_(None),
                        )
                    )
                )
            return list(session.execute(stmt).all())

    def _cells(self, contact: Contact, company: Company | None) -> list[str]:
        cells = [_text(getattr(contact, name)) for name in CONTACT_EXPORT_FIELDS]
        if company is None:
            cells += [""] * (len(COMPANY_EXPORT_FIELDS) + len(self.company_attributes))
        else:
            cells += [_text(getattr(company, name)) for name in COMPANY_EXPORT_FIELDS]
            cells += [
                _text(company.attributes.get(name), kind) for name, kind in self.company_attributes
            ]
        cells += [_text(contact.attributes.get(name), kind) for name, kind in self.attributes]
        cells += [_text(getattr(contact, name)) for name in TRAILING_FIELDS]
        return cells


def prepare_export(engine: Engine, workspace_id: int, wanted: ExportFilter) -> Export:
    """Check the filter (known status, existing list) and fix the columns."""
    if wanted.status is not None and wanted.status not in CONTACT_STATUSES:
        raise ValidationFailed(
            f"status must be one of {', '.join(CONTACT_STATUSES)}",
            code="invalid_status",
            field="status",
        )
    with Session(engine) as session:
        tenancy.bind(session, workspace_id)
        list_id = None
        if wanted.list_name is not None:
            list_id = session.scalar(
                select(MailingList.id).where(MailingList.name == wanted.list_name.strip())
            )
            if list_id is None:
                raise NotFound(
                    f"no list named {wanted.list_name!r} in this workspace", field="list"
                )
        if wanted.segment_id is not None:
            found = session.scalar(select(Segment.id).where(Segment.id == wanted.segment_id))
            if found is None:
                raise NotFound(
                    f"no segment {wanted.segment_id} in this workspace",
                    code="segment_not_found",
                    field="segment_id",
                )
        schema = AttributeSchema.load(session, Entity.CONTACT)
        company_schema = AttributeSchema.load(session, Entity.COMPANY)
    return Export(
        engine=engine,
        workspace_id=workspace_id,
        status=wanted.status,
        list_id=list_id,
        segment_id=wanted.segment_id,
        attributes=tuple(sorted(schema.types.items())),
        company_attributes=tuple(sorted(company_schema.types.items())),
    )
