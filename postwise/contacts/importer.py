"""CSV import of contacts: files of any size, in constant memory, applied a batch at a time.

How to use it and what it guarantees: ``docs/imports.md``.

Reading
    The file is read as bytes, one physical line at a time, and never held whole.
    *Encoding*: a UTF-8 byte-order mark means UTF-8. Otherwise the first 64 KiB decide:
    valid UTF-8 means UTF-8, anything else Latin-1 (every byte is valid Latin-1). A late
    surprise — a byte that is not UTF-8 after a sample that was — is handled per line:
    if every line before it was plain ASCII, the file is switched to Latin-1 from that
    line on, which loses and repeats nothing because ASCII reads the same in both; if
    earlier lines already held real UTF-8, the file mixes encodings and the record with
    the bad line is rejected with that reason (no guessing at what it meant).
    ``encoding="utf-8"`` or ``"latin-1"`` turns detection off. UTF-16 and spreadsheet
    workbooks are refused with a message saying how to save the file instead.
    *Delimiter*: ``csv.Sniffer`` on the sample, limited to ``, ; tab |``, falling back
    to the most frequent of those in the header line.

Rows
    The header row is required. Columns map to fields by ``--map COLUMN=FIELD``, else
    by name (case-insensitive; spaces and hyphens count as ``_``): contact fields,
    ``attributes.NAME`` or a bare declared attribute name, ``company.FIELD`` and
    ``company.attributes.NAME``. Unmapped columns are reported once as ignored.
    Cells are trimmed; an empty cell means "not given" and never erases a stored value.
    An apostrophe our exporter put before a formula character is removed again.
    Each row is checked by ``clean_contact``/``clean_company``, the rules the API uses.

Rejects
    A rejected row changes nothing and goes to the report CSV with the physical line
    where its record *starts* (1 is the header; a quoted field may span lines, so the
    next record can start several lines later), the email as written, the reasons and
    the original cells (guarded against formula injection like an export).
    Reasons: wrong number of cells, NUL characters, undecodable bytes, malformed CSV,
    any validation error, a sticky status it would undo, an external id that belongs to
    someone else, and an email already used by an earlier row of the same file. A row
    refused for an external id is retried after the rest of the file (a later row may
    free the id) and reported last if it still cannot go in.

Applying
    Records are cut into batches of ``import_batch_size``; the valid rows of each are
    planned by ``bulkwrite.Planner`` and written by a ``bulkwrite.Writer`` in one
    transaction, so an interrupted import has applied whole batches only. Reading and
    validating here overlap with writing on worker threads (``_Pipeline``). Re-running
    the same file is a no-op for everything already applied (that is how an interrupted
    import is resumed): unchanged rows write nothing at all.
"""

from __future__ import annotations

import codecs
import csv
import gc
import io
import itertools
import json
import queue
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from postwise.contacts import lists
from postwise.contacts.attributes import AttributeSchema, Entity
from postwise.contacts.bulkwrite import (
    BatchOutcome,
    ListTarget,
    Prepared,
    Row,
    Writer,
    open_batches,
)
from postwise.contacts.emails import normalize_email
from postwise.contacts.exporter import guard_cell, unguard_cell
from postwise.contacts.fields import CONTACT_FIELDS, clean_company, clean_contact
from postwise.core.clock import utcnow
from postwise.core.errors import FieldError, ValidationFailed
from postwise.core.settings import get_settings

SAMPLE_BYTES = 64 * 1024
MAX_LINE_BYTES = 8 * 1024 * 1024
UTF8_BOM = codecs.BOM_UTF8
ENCODINGS = ("auto", "utf-8", "latin-1")
DELIMITERS = {",": ",", ";": ";", "\t": "\t", "tab": "\t", "|": "|"}
CONTACT_TARGETS = tuple(name for name in CONTACT_FIELDS if name != "attributes")
COMPANY_TARGETS = ("name", "industry", "employee_count", "size_band", "revenue_band", "country")
REPORT_COLUMNS = ("_line", "_email", "_reason", "_codes")
CELL_CACHE = 4096  # distinct cleaned values remembered per column
GC_THRESHOLDS = (20_000, 20, 10)  # while importing (see _paced_collector)

_HEADER_SEPARATORS = re.compile(r"[\s\-]+")
_REFUSED_PREFIXES = {
    codecs.BOM_UTF16_LE: "UTF-16",
    codecs.BOM_UTF16_BE: "UTF-16",
    b"PK\x03\x04": "a zip archive (an .xlsx workbook?)",
    b"\xd0\xcf\x11\xe0": "an .xls workbook",
}


def _unusable(message: str, code: str, field: str = "file") -> ValidationFailed:
    return ValidationFailed(message, code=code, field=field)


# -- options and results -------------------------------------------------------------------


@dataclass(frozen=True)
class ImportOptions:
    list_name: str | None = None
    mapping: Mapping[str, str] = field(default_factory=dict)
    encoding: str = "auto"
    delimiter: str = "auto"
    consent_text: str | None = None
    batch_size: int | None = None


@dataclass
class ImportProgress:
    bytes_read: int = 0
    bytes_total: int = 0
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
        }


PROGRESS_FIELDS = tuple(ImportProgress.__dataclass_fields__)


@dataclass
class ImportResult(ImportProgress):
    encoding: str = ""
    delimiter: str = ""
    columns: dict[str, str] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    report_path: str | None = None
    seconds: float = 0.0
    list_id: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


# Called inside each batch's transaction: progress saved there commits with the batch.
BatchHook = Callable[[Session, ImportProgress], None]


def parse_mapping(items: Sequence[str]) -> dict[str, str]:
    """``["E-Mail=email", "Notes="]`` → ``{"E-Mail": "email", "Notes": ""}`` (empty: ignore).

    Split at the last ``=``: field names never contain one, column names might.
    """
    mapping: dict[str, str] = {}
    for item in items:
        column, sep, target = item.rpartition("=")
        if not sep or not column.strip():
            raise _unusable(
                f"--map {item!r} is not COLUMN=FIELD (for example 'E-Mail=email')",
                "invalid_map",
                "map",
            )
        mapping[column.strip()] = target.strip()
    return mapping


# -- encoding, delimiter and lines ---------------------------------------------------------


def detect_encoding(sample: bytes, wanted: str = "auto") -> tuple[str, bool]:
    """(encoding, may switch to Latin-1 later) for a file starting with ``sample``."""
    if wanted not in ENCODINGS:
        raise _unusable(
            f"encoding must be one of {', '.join(ENCODINGS)}", "invalid_encoding", "encoding"
        )
    for prefix, what in _REFUSED_PREFIXES.items():
        if sample.startswith(prefix):
            raise _unusable(
                f"the file is {what}, not CSV text: save it as 'CSV UTF-8' and import that",
                "unsupported_file",
            )
    if sample.startswith(UTF8_BOM) or wanted == "utf-8":
        return "utf-8", False
    if wanted == "latin-1":
        return "latin-1", False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return "latin-1", False
    return "utf-8", True


def sniff_delimiter(text: str, wanted: str = "auto") -> str:
    if wanted != "auto":
        try:
            return DELIMITERS[wanted]
        except KeyError:
            raise _unusable(
                "delimiter must be auto, ',', ';', '|' or tab", "invalid_delimiter", "delimiter"
            ) from None
    try:
        found = csv.Sniffer().sniff(text, delimiters=",;\t|").delimiter
    except csv.Error:
        found = ""
    if found in DELIMITERS:
        return found
    header = text.split("\n", 1)[0]
    counts = {d: header.count(d) for d in ",;\t|"}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


class _Lines:
    """The file's physical lines, decoded; counts lines (for the report) and bytes read
    (for progress), and applies the late-encoding rule of the module docstring."""

    def __init__(self, raw: BinaryIO, encoding: str, switchable: bool) -> None:
        self.raw = raw
        self.encoding = encoding
        self.switchable = switchable
        self.number = 0
        self.bytes_read = 0
        self.non_ascii = False
        self.switched_at: int | None = None
        self.undecodable: list[str] = []

    def __iter__(self) -> Iterator[str]:
        readline = self.raw.readline
        while chunk := readline(MAX_LINE_BYTES):
            self.number += 1
            self.bytes_read += len(chunk)
            if len(chunk) >= MAX_LINE_BYTES and not chunk.endswith(b"\n"):
                raise _unusable(
                    f"line {self.number} is longer than {MAX_LINE_BYTES // 2**20} MiB: "
                    "this does not look like a CSV file",
                    "line_too_long",
                )
            if self.number == 1 and chunk.startswith(UTF8_BOM):
                chunk = chunk[len(UTF8_BOM) :]
            if self.encoding == "latin-1" or chunk.isascii():
                yield chunk.decode(self.encoding)
                continue
            try:
                text = chunk.decode("utf-8")
            except UnicodeDecodeError as exc:
                if self.switchable and not self.non_ascii:
                    self.encoding, self.switched_at = "latin-1", self.number
                    yield chunk.decode("latin-1")
                    continue
                self.undecodable.append(
                    f"line {self.number} is not valid UTF-8 (byte 0x{chunk[exc.start]:02x} at "
                    f"position {exc.start + 1}) although earlier lines were; fix the file's "
                    "encoding, or import with encoding latin-1"
                )
                text = chunk.decode("utf-8", "replace")
            self.non_ascii = True
            yield text


# -- columns -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Columns:
    """Which cell feeds which field; built once from the header."""

    header: tuple[str, ...]
    contact: tuple[tuple[int, str], ...]
    attributes: tuple[tuple[int, str], ...]
    company: tuple[tuple[int, str], ...]
    company_attributes: tuple[tuple[int, str], ...]
    ignored: tuple[str, ...]
    email_index: int

    def targets(self) -> dict[str, str]:
        pairs = [(i, f) for i, f in self.contact]
        pairs += [(i, f"attributes.{f}") for i, f in self.attributes]
        pairs += [(i, f"company.{f}") for i, f in self.company]
        pairs += [(i, f"company.attributes.{f}") for i, f in self.company_attributes]
        return {self.header[i]: target for i, target in sorted(pairs)}

    def column_of(self, field_name: str, *, company: bool = False) -> str:
        """The header of the column behind a field, for reasons a person can act on."""
        wanted = f"company.{field_name}" if company else field_name
        for column, target in self.targets().items():
            if target == wanted:
                return column
        return wanted


def _normalized(name: str) -> str:
    return _HEADER_SEPARATORS.sub("_", name.strip().lower())


def _target_kind(
    target: str, schema: AttributeSchema, company_schema: AttributeSchema
) -> tuple[str, str]:
    """("contact" | "attributes" | "company" | "company_attributes", name) or an error."""
    if target in CONTACT_TARGETS:
        return "contact", target
    if target.startswith("company.attributes."):
        name = target.removeprefix("company.attributes.")
        if name in company_schema.types:
            return "company_attributes", name
        raise _unusable(
            f"{target!r}: {name!r} is not a declared company attribute; declare it first "
            "(POST /api/attributes or 'postwise attribute create')",
            "unknown_attribute",
            "map",
        )
    if target.startswith("company."):
        name = target.removeprefix("company.")
        if name in COMPANY_TARGETS:
            return "company", name
    elif target.startswith("attributes."):
        name = target.removeprefix("attributes.")
        if name in schema.types:
            return "attributes", name
        raise _unusable(
            f"{target!r}: {name!r} is not a declared contact attribute; declare it first "
            "(POST /api/attributes or 'postwise attribute create')",
            "unknown_attribute",
            "map",
        )
    raise _unusable(
        f"{target!r} is not a field an import can set; use one of: "
        f"{', '.join(CONTACT_TARGETS)}, attributes.NAME, "
        f"{', '.join('company.' + t for t in COMPANY_TARGETS)}, company.attributes.NAME",
        "unknown_field",
        "map",
    )


def resolve_columns(
    header: Sequence[str],
    mapping: Mapping[str, str],
    schema: AttributeSchema,
    company_schema: AttributeSchema,
) -> Columns:
    names = [name.strip() for name in header]
    targets: dict[int, str] = {}
    explicit: set[int] = set()
    for column, target in mapping.items():
        matches = [i for i, name in enumerate(names) if name == column] or [
            i for i, name in enumerate(names) if name.lower() == column.lower()
        ]
        if not matches:
            raise _unusable(
                f"--map names column {column!r}, but the header has: {', '.join(names)}",
                "unknown_column",
                "map",
            )
        if len(matches) > 1:
            raise _unusable(
                f"the header has {len(matches)} columns named {column!r}; rename them",
                "ambiguous_column",
                "map",
            )
        targets[matches[0]] = target.lower() if target else ""
        explicit.add(matches[0])
    for i, name in enumerate(names):
        if i in targets:
            continue
        guess = _normalized(name)
        if guess in CONTACT_TARGETS or guess.startswith(("attributes.", "company.")):
            targets[i] = guess
        elif guess in schema.types:
            targets[i] = f"attributes.{guess}"
    kinds: dict[str, list[tuple[int, str]]] = {
        "contact": [],
        "attributes": [],
        "company": [],
        "company_attributes": [],
    }
    seen: dict[str, int] = {}
    ignored = []
    for i, name in enumerate(names):
        if i not in targets:
            if name:
                ignored.append(name)
            continue
        target = targets[i]
        if not target:
            continue
        try:
            kind, field_name = _target_kind(target, schema, company_schema)
        except ValidationFailed:
            if i in explicit:
                raise
            ignored.append(name)  # a guess from the header name, not a request: skip it
            continue
        if target in seen:
            raise _unusable(
                f"columns {names[seen[target]]!r} and {name!r} both map to {target}; "
                "map one of them to another field or ignore it with --map 'COLUMN='",
                "duplicate_target",
                "map",
            )
        seen[target] = i
        kinds[kind].append((i, field_name))
    if "email" not in seen:
        looks_like_data = any("@" in name for name in names)
        if looks_like_data:
            raise _unusable(
                "the first line looks like data, not column names: the file needs a header "
                "row naming its columns (for example 'email,first_name')",
                "no_header",
            )
        raise _unusable(
            f"no column maps to email (the header has: {', '.join(names) or 'nothing'}); "
            "name it with --map 'COLUMN=email'",
            "no_email_column",
            "map",
        )
    return Columns(
        header=tuple(names),
        contact=tuple(kinds["contact"]),
        attributes=tuple(kinds["attributes"]),
        company=tuple(kinds["company"]),
        company_attributes=tuple(kinds["company_attributes"]),
        ignored=tuple(ignored),
        email_index=seen["email"],
    )


# -- rows --------------------------------------------------------------------------------


def _copied(attributes: dict[str, Any]) -> dict[str, Any]:
    """Remembered values are shared between rows: lists (the only mutable ones) are not."""
    for name, value in attributes.items():
        if isinstance(value, list):
            attributes[name] = list(value)
    return attributes


def _given(cells: Sequence[str], index: int) -> str:
    value = cells[index].strip()
    return unguard_cell(value) if value else value


_MISSING: Any = object()
# The order in which ``clean_contact`` and ``clean_company`` produce their fields: the
# fast path below gives its values in the same order.
_CONTACT_ORDER = (
    "external_id", "first_name", "last_name", "job_title", "department", "seniority",
    "country", "timezone", "language", "phone", "status",
)  # fmt: skip
_COMPANY_ORDER = COMPANY_TARGETS


class _Cells:
    """One column's cleaned values by raw cell text: a contact file repeats its countries,
    titles, plans and company names over and over, so each distinct cell is cleaned once.

    ``clean`` gives what the cell adds to the row (``{}`` for an empty cell) or ``None``
    if it is invalid (the row then goes the exact way, for its reasons). At most
    ``CELL_CACHE`` values are kept (constant memory); a column whose values hardly repeat
    stops being remembered (``direct``) and is cleaned with the rest of its row instead.
    """

    __slots__ = ("attribute", "clean", "direct", "hits", "index", "known", "misses", "name")

    def __init__(
        self,
        name: str,
        index: int,
        clean: Callable[[str], dict[str, Any] | None],
        *,
        attribute: bool = False,
    ) -> None:
        self.attribute = attribute
        self.name = name
        self.index = index
        self.clean = clean
        self.known: dict[str, dict[str, Any] | None] = {}
        self.hits = 0
        self.misses = 0
        self.direct = False

    def get(self, cell: str) -> dict[str, Any] | None:
        found = self.known.get(cell, _MISSING)
        if found is not _MISSING:
            self.hits += 1
            return cast("dict[str, Any] | None", found)
        self.misses += 1
        out = self.clean(cell)
        if len(self.known) >= CELL_CACHE:
            self.known.clear()
            if self.hits < self.misses:  # mostly distinct values: stop remembering
                self.direct = True
                return out
            self.hits = self.misses = 0
        self.known[cell] = out
        return out


def _cleaner(
    clean: Callable[..., dict[str, Any]], schema: AttributeSchema, name: str
) -> Callable[[str], dict[str, Any] | None]:
    """What one cell of field ``name`` adds to a row, by the shared cleaning rules."""
    attribute = name.startswith("attributes.")
    key = name.removeprefix("attributes.")

    def one(cell: str) -> dict[str, Any] | None:
        value = cell.strip()
        if value:
            value = unguard_cell(value)
        if not value:
            return {}
        data = {"attributes": {key: value}} if attribute else {name: value}
        try:
            out = clean(data, schema, partial=True)
        except ValidationFailed:
            return None
        return out["attributes"] if attribute else out

    return one


def _assemble(
    out: dict[str, Any],
    columns: Sequence[_Cells],
    cells: Sequence[str],
    clean: Callable[..., dict[str, Any]],
    schema: AttributeSchema,
) -> dict[str, Any] | None:
    """``out`` plus what the cells of ``columns`` add, in their order; None if a cell is
    invalid. Columns not remembered (``direct``) are cleaned together, in one call."""
    direct: dict[str, Any] | None = None
    for column in columns:
        if column.direct:
            if direct is None:
                direct = {}
            if value := _given(cells, column.index):
                direct[column.name] = value
            continue
        if column.name == "size_band" and "employee_count" in out:
            continue  # the count decides the band; clean_company does not look at this cell
        found = column.get(cells[column.index])
        if found is None:
            return None
        out.update(found)
    if direct and "employee_count" in out:
        direct.pop("size_band", None)  # a remembered count decides the band, as above
    if direct:
        attribute = columns[0].attribute
        try:
            if attribute:
                found = clean({"attributes": direct}, schema, partial=True)["attributes"]
            else:
                found = clean(direct, schema, partial=True)
        except ValidationFailed:
            return None
        if "employee_count" in found:
            out.pop("size_band", None)
        out.update(found)
        order = [column.name for column in columns]
        if "employee_count" in out:
            order.insert(order.index("employee_count") + 1, "size_band")
        out = {
            name: out[name]
            for name in dict.fromkeys(["email", "email_domain", *order])
            if name in out
        }
    return out


class _Validator:
    """Turns records into ``Row``s or reasons, by ``clean_contact``/``clean_company``.

    ``check`` cleans each distinct cell once (``_Cells``) and assembles the row; anything
    unusual (a wrong cell count, a NUL, an invalid cell, a column not worth remembering)
    goes through ``exact``, which hands the whole row to the shared rules. Both give the
    same result for every row (a property test); the first is several times cheaper on
    a file whose columns repeat their values.
    """

    def __init__(
        self, columns: Columns, schema: AttributeSchema, company_schema: AttributeSchema
    ) -> None:
        self.columns = columns
        self.schema = schema
        self.company_schema = company_schema
        self.width = len(columns.header)
        contact = {name: i for i, name in columns.contact}
        self.email_index = contact.pop("email")
        self.contact = [
            _Cells(name, contact[name], _cleaner(clean_contact, schema, name))
            for name in _CONTACT_ORDER
            if name in contact
        ]
        self.attributes = [
            _Cells(name, i, _cleaner(clean_contact, schema, f"attributes.{name}"), attribute=True)
            for i, name in columns.attributes
        ]
        company = {name: i for i, name in columns.company}
        self.company = [
            _Cells(name, company[name], _cleaner(clean_company, company_schema, name))
            for name in _COMPANY_ORDER
            if name in company
        ]
        self.company_attributes = [
            _Cells(
                name,
                i,
                _cleaner(clean_company, company_schema, f"attributes.{name}"),
                attribute=True,
            )
            for i, name in columns.company_attributes
        ]
        self.has_company = bool(self.company or self.company_attributes)

    def check(self, line: int, cells: list[str]) -> Row | list[FieldError]:
        if len(cells) != self.width or "\x00" in "".join(cells):
            return self.exact(line, cells)
        email = cells[self.email_index].strip()
        if email:
            email = unguard_cell(email)
        try:
            parsed = normalize_email(email)
        except ValidationFailed:
            return self.exact(line, cells)
        values = _assemble(
            {"email": parsed.address, "email_domain": parsed.domain},
            self.contact,
            cells,
            clean_contact,
            self.schema,
        )
        if values is None:
            return self.exact(line, cells)
        if self.attributes:
            attributes = _assemble({}, self.attributes, cells, clean_contact, self.schema)
            if attributes is None:
                return self.exact(line, cells)
            if attributes:
                values["attributes"] = _copied(attributes)
        company: dict[str, Any] | None = None
        if self.has_company:
            company = _assemble({}, self.company, cells, clean_company, self.company_schema)
            if company is None:
                return self.exact(line, cells)
            if self.company_attributes:
                attributes = _assemble(
                    {}, self.company_attributes, cells, clean_company, self.company_schema
                )
                if attributes is None:
                    return self.exact(line, cells)
                if attributes:
                    company["attributes"] = _copied(attributes)
            company = company or None
        return Row(line, values, company, cells)

    def exact(self, line: int, cells: list[str]) -> Row | list[FieldError]:
        """The whole row through the shared rules, every problem reported."""
        cols = self.columns
        if len(cells) != self.width:
            return [
                FieldError(
                    None,
                    "wrong_cell_count",
                    f"the row has {len(cells)} cells, the header has {self.width} "
                    "(a delimiter or quote too many or too few?)",
                )
            ]
        for i, cell in enumerate(cells):
            if "\x00" in cell:
                return [
                    FieldError(
                        cols.header[i],
                        "invalid_character",
                        f"{cols.header[i] or f'column {i + 1}'} contains a NUL character",
                    )
                ]
        data: dict[str, Any] = {}
        for i, name in cols.contact:
            if value := _given(cells, i):
                data[name] = value
        if cols.attributes:
            attributes = {name: v for i, name in cols.attributes if (v := _given(cells, i))}
            if attributes:
                data["attributes"] = attributes
        company: dict[str, Any] = {}
        for i, name in cols.company:
            if value := _given(cells, i):
                company[name] = value
        if cols.company_attributes:
            attributes = {name: v for i, name in cols.company_attributes if (v := _given(cells, i))}
            if attributes:
                company["attributes"] = attributes
        errors: list[FieldError] = []
        values: dict[str, Any] = {}
        try:
            values = clean_contact(data, self.schema)
        except ValidationFailed as exc:
            errors += exc.errors
        company_values = None
        if company:
            try:
                company_values = clean_company(company, self.company_schema, partial=True)
            except ValidationFailed as exc:
                errors += [
                    FieldError(f"company.{e.field}", e.code, f"company {e.message}")
                    for e in exc.errors
                ]
        if errors:
            return errors
        return Row(line, values, company_values, cells)


class _Report:
    """The rejected rows, streamed to a CSV as they occur; created on the first reject."""

    def __init__(self, path: Path | None, columns: Columns, delimiter: str) -> None:
        self.path = path
        self.columns = columns
        self.delimiter = delimiter
        self.count = 0
        self._file: IO[str] | None = None
        self._writer: Any = None

    def add(self, line: int, cells: Sequence[str] | None, errors: Sequence[FieldError]) -> None:
        self.count += 1
        if self.path is None:
            return
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", encoding="utf-8-sig", newline="")
            self._writer = csv.writer(self._file, delimiter=self.delimiter)
            self._writer.writerow([*REPORT_COLUMNS, *self.columns.header])
        cells = list(cells or [])
        email_index = self.columns.email_index
        email = cells[email_index].strip() if email_index < len(cells) else ""
        reason = "; ".join(self._reason(e) for e in errors)
        codes = ",".join(dict.fromkeys(e.code for e in errors))
        row = [str(line), email, reason, codes, *(c.replace("\x00", "\\0") for c in cells)]
        self._writer.writerow([guard_cell(cell) for cell in row])

    def _reason(self, error: FieldError) -> str:
        if not error.field or error.field in self.columns.header:
            return error.message
        company = error.field.startswith("company.")
        name = error.field.removeprefix("company.") if company else error.field
        column = self.columns.column_of(name, company=company)
        return f"{column}: {error.message}"

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _records(
    reader: Any, lines: _Lines
) -> Iterator[tuple[int, list[str] | None, list[FieldError]]]:
    """(line where the record starts, cells, problems found while reading it)."""
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            lines.undecodable.clear()
            yield start, None, [FieldError(None, "malformed_csv", f"malformed CSV: {exc}")]
            continue
        if lines.undecodable:
            problems = [FieldError(None, "undecodable", text) for text in lines.undecodable]
            lines.undecodable.clear()
            yield start, cells, problems
            continue
        if not any(map(str.strip, cells)):
            continue  # blank line, or only delimiters
        yield start, cells, []


# -- the import --------------------------------------------------------------------------


def _retryable(errors: Sequence[FieldError]) -> bool:
    return any(error.code == "external_id_taken" for error in errors)


class _Spool:
    """Rows to try again, with their latest reasons, kept in a temporary file so that
    memory stays flat however many there are."""

    def __init__(self, file: IO[str]) -> None:
        self._file = file
        self._writer = csv.writer(file)
        self.count = 0

    @classmethod
    def open(cls, stack: ExitStack) -> _Spool:
        """A spool whose file goes when ``stack`` closes."""
        return cls(stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8", newline="")))

    def add(self, line: int, cells: list[str], errors: Sequence[FieldError]) -> None:
        reasons = json.dumps([[e.field, e.code, e.message] for e in errors])
        self._writer.writerow([line, reasons, *cells])
        self.count += 1

    def entries(self) -> Iterator[tuple[int, list[str], list[FieldError]]]:
        self._file.flush()
        self._file.seek(0)
        for record in csv.reader(self._file):
            errors = [FieldError(*error) for error in json.loads(record[1])]
            yield int(record[0]), record[2:], errors

    def batches(self, size: int) -> Iterator[list[tuple[int, list[str]]]]:
        chunk: list[tuple[int, list[str]]] = []
        for line, cells, _errors in self.entries():
            chunk.append((line, cells))
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


@dataclass
class _Batch:
    """Up to ``batch_size`` records: the valid rows and the rejects, in file order."""

    rows: list[Row] = field(default_factory=list)
    rejects: list[tuple[int, list[str] | None, list[FieldError]]] = field(default_factory=list)
    records: int = 0
    bytes_read: int = 0
    final: bool = False
    prepared: Prepared | None = None
    number: int = 0


class _CollectorPace:
    """Run CPython's cyclic garbage collector less often while imports run.

    An import allocates several short-lived objects per row (cells, rows, decisions),
    none of them in cycles, so reference counting frees them all. But each allocation
    counts towards the collector's thresholds, and with the defaults it traverses every
    object of the process (SQLAlchemy's metadata, caches, ...) every few thousand rows,
    which cost about a fifth of the importer's CPU. ``GC_THRESHOLDS`` makes that rare
    (a full collection every few hundred thousand rows, so the few cycles that each
    batch's database work leaves behind stay bounded); the previous thresholds come back
    when the last import running in the process ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._saved = gc.get_threshold()

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._running == 0:
                self._saved = gc.get_threshold()
                gc.set_threshold(*GC_THRESHOLDS)
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    gc.set_threshold(*self._saved)


_paced_collector = _CollectorPace()


class _Pipeline:
    """Reading and validating (the caller's thread) overlap with writing (worker threads).

    Parsing is Python work and the database is busy with the batches before, so the two
    overlap well; at most ``depth`` batches wait in between, which keeps memory flat.
    Each worker has its own connection; the first failure stops them all and is re-raised
    to the reader at its next ``put`` or at ``close``.
    """

    def __init__(self, appliers: Sequence[Callable[[_Batch], None]], depth: int = 2) -> None:
        self._queue: queue.Queue[_Batch | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._run, args=(apply,), name="postwise-import", daemon=True)
            for apply in appliers
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, apply: Callable[[_Batch], None]) -> None:
        while True:
            batch = self._queue.get()
            try:
                if batch is None:
                    return
                if self._error is None and not self._stopped:
                    apply(batch)
            except BaseException as exc:
                self._error = self._error or exc
            finally:
                self._queue.task_done()

    def put(self, batch: _Batch) -> None:
        while True:
            if self._error is not None:
                raise self._error
            try:
                self._queue.put(batch, timeout=0.2)
                return
            except queue.Full:
                continue

    def drain(self) -> None:
        """Wait until every batch handed over so far is written."""
        self._queue.join()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._stop()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """The reader failed: drop what is queued, let the batches in hand finish, stop."""
        self._stopped = True
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            self._queue.task_done()
        self._stop()

    def _stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()


def _open(source: str | Path | BinaryIO, stack: ExitStack) -> BinaryIO:
    if isinstance(source, str | Path):
        try:
            return stack.enter_context(Path(source).open("rb"))
        except OSError as exc:
            raise _unusable(
                f"cannot read {source}: {exc.strerror or exc}", "unreadable_file"
            ) from None
    return source


def _size(raw: BinaryIO) -> int:
    try:
        position = raw.tell()
        end = raw.seek(0, io.SEEK_END)
        raw.seek(position)
        return end - position
    except (OSError, ValueError):
        return 0


def _prepare(
    session: Session, options: ImportOptions, header: Sequence[str]
) -> tuple[Columns, _Validator, ListTarget | None]:
    schema = AttributeSchema.load(session, Entity.CONTACT)
    company_schema = AttributeSchema.load(session, Entity.COMPANY)
    columns = resolve_columns(header, options.mapping, schema, company_schema)
    target = None
    if options.list_name is not None:
        if not options.list_name.strip():
            raise _unusable("the list name must not be empty", "invalid_list", "list")
        found = lists.get_or_create_list(session, options.list_name)
        target = ListTarget(found.id, found.name, found.double_opt_in, options.consent_text)
    return columns, _Validator(columns, schema, company_schema), target


def import_contacts(
    engine: Engine,
    workspace_id: int,
    source: str | Path | BinaryIO,
    options: ImportOptions | None = None,
    *,
    report_path: str | Path | None = None,
    on_batch: BatchHook | None = None,
) -> ImportResult:
    """Import a CSV file into a workspace; returns counts (see the module docstring).

    Raises ``ValidationFailed`` before writing anything when the file cannot be used:
    unreadable, empty, no header, no email column, a bad mapping, an unsupported format.
    """
    options = options or ImportOptions()
    batch_size = options.batch_size or get_settings().import_batch_size
    started = time.perf_counter()
    report_file = Path(report_path) if report_path is not None else None
    with ExitStack() as stack:
        stack.enter_context(_paced_collector())
        raw = _open(source, stack)
        total = _size(raw)
        sample = raw.read(SAMPLE_BYTES)
        raw.seek(0)
        encoding, switchable = detect_encoding(sample, options.encoding)
        sample_text = sample.removeprefix(UTF8_BOM).decode(encoding, "replace")
        if "\r" in sample_text and "\n" not in sample_text:
            raise _unusable(
                "the file separates lines with CR only (old Mac format); save it with "
                "Windows or Unix line endings",
                "unsupported_line_endings",
            )
        if len(sample) == SAMPLE_BYTES:
            sample_text = sample_text.rsplit("\n", 1)[0]
        delimiter = sniff_delimiter(sample_text, options.delimiter)
        lines = _Lines(raw, encoding, switchable)
        reader = csv.reader(lines, delimiter=delimiter, quotechar='"', doublequote=True)
        try:
            header = next(reader)
        except StopIteration:
            raise _unusable(
                "the file is empty: the first line must name the columns", "empty_file"
            ) from None
        except csv.Error as exc:
            raise _unusable(f"the header line is not valid CSV: {exc}", "no_header") from None
        if not any(cell.strip() for cell in header):
            raise _unusable(
                "the first line is empty: it must name the columns (for example "
                "'email,first_name')",
                "no_header",
            )
        planner, writers = stack.enter_context(open_batches(engine, workspace_id))
        with writers[0].session.begin():
            columns, validator, target = _prepare(writers[0].session, options, header)
        report = _Report(report_file, columns, delimiter)
        stack.callback(report.close)
        result = ImportResult(
            bytes_total=total,
            delimiter=delimiter,
            columns=columns.targets(),
            ignored_columns=list(columns.ignored),
            list_id=target.id if target else None,
        )
        ahead = planner.session is not writers[0].session  # plan here, write elsewhere
        names_external_ids = any(name == "external_id" for _, name in columns.contact)
        done = threading.Lock()
        spool = _Spool.open(stack)
        unreported: dict[int, list[tuple[int, list[str] | None, list[FieldError]]]] = {}
        numbers = itertools.count()
        next_report = [0]

        def plan(batch: _Batch) -> Prepared:
            with planner.session.begin():
                return planner.prepare(batch.rows, target, utcnow())

        def finished(batch: _Batch, outcome: BatchOutcome) -> ImportProgress:
            """Count a written batch and report rejects in file order (batches written
            side by side can finish out of order). Called under ``done``."""
            rejects = batch.rejects
            for d in outcome.rejected:
                if _retryable(d.errors):
                    spool.add(d.row.line, d.row.cells, d.errors)
                else:
                    rejects.append((d.row.line, d.row.cells, d.errors))
            unreported[batch.number] = sorted(rejects, key=lambda item: item[0])
            while next_report[0] in unreported:
                for line, cells, errors in unreported.pop(next_report[0]):
                    report.add(line, cells, errors)
                next_report[0] += 1
            result.rows += batch.records
            result.created += outcome.created
            result.updated += outcome.updated
            result.unchanged += outcome.unchanged
            result.rejected += len(rejects)
            result.bytes_read = max(result.bytes_read, batch.bytes_read)
            return ImportProgress(**{k: getattr(result, k) for k in PROGRESS_FIELDS})

        def applier(writer: Writer) -> Callable[[_Batch], None]:
            def apply(batch: _Batch) -> None:
                with writer.session.begin():
                    now = utcnow()
                    prepared = batch.prepared or planner.prepare(batch.rows, target, now)
                    outcome = writer.write(prepared, target, now, final=batch.final)
                    with done:
                        progress = finished(batch, outcome)
                    if on_batch is not None:
                        on_batch(writer.session, progress)

            return apply

        # Measured on two CPUs: a second writer pays when a list doubles the writing per
        # row (+25%), and costs when the planner is as busy as the one writer (-15%).
        busy = writers if target is not None else writers[:1]
        for writer in writers:
            writer.side_by_side = len(busy) > 1
        pipeline = _Pipeline([applier(writer) for writer in busy])

        def send(batch: _Batch) -> None:
            batch.bytes_read = lines.bytes_read
            batch.number = next(numbers)
            if ahead:
                if batch.final or (
                    names_external_ids and any(row.values.get("external_id") for row in batch.rows)
                ):
                    # Who owns an external id may change in the batches before; and the
                    # last batch commits last, durably, with all before it.
                    pipeline.drain()
                batch.prepared = plan(batch)
            pipeline.put(batch)

        try:
            batch = _Batch()
            for line, cells, problems in _records(reader, lines):
                batch.records += 1
                checked = problems or validator.check(line, cells or [])
                if isinstance(checked, Row):
                    batch.rows.append(checked)
                else:
                    batch.rejects.append((line, cells, checked))
                if batch.records >= batch_size:
                    send(batch)
                    batch = _Batch()
            batch.final = True
            send(batch)
        except BaseException:
            pipeline.abort()
            raise
        pipeline.close()

        def retry(rows: list[Row], refused: _Spool) -> bool:
            """One batch of a retry pass, written at once; True if a row went in."""
            with writers[0].session.begin():
                now = utcnow()
                batch = _Batch(rows=rows)
                prepared = plan(batch) if ahead else planner.prepare(rows, target, now)
                outcome = writers[0].write(prepared, target, now)
                for d in outcome.rejected:
                    if _retryable(d.errors):
                        refused.add(d.row.line, d.row.cells, d.errors)
                    else:
                        report.add(d.row.line, d.row.cells, d.errors)
                result.created += outcome.created
                result.updated += outcome.updated
                result.unchanged += outcome.unchanged
                if on_batch is not None:
                    on_batch(writers[0].session, result)
                return outcome.created + outcome.updated + outcome.unchanged > 0

        # Rows refused for an external id someone else held go again once the rest of
        # the file is in, as long as a pass gets any of them in: a later row may have
        # moved the id away, and without this a second run of the file would apply them.
        pending = spool
        while pending.count:
            refused = _Spool.open(stack)
            moved = False
            for chunk in pending.batches(batch_size):
                rows = [
                    checked
                    for line, cells in chunk
                    if isinstance(checked := validator.check(line, cells), Row)
                ]
                moved = retry(rows, refused) or moved
            pending = refused
            if not moved:
                for line, cells, errors in pending.entries():
                    report.add(line, cells, errors)
                break
        result.rejected = report.count
    result.encoding = encoding
    if lines.switched_at is not None:
        result.encoding = "latin-1"
        result.notes.append(
            f"line {lines.switched_at} was not UTF-8 and every line before it was plain "
            "ASCII: read the file as Latin-1 from there on"
        )
    result.report_path = str(report_file) if report_file is not None and report.count else None
    result.seconds = time.perf_counter() - started
    return result
