"""What the evaluator knows about one contact, and how to load only what a definition needs.

``ContactFacts`` is plain data (rows as mappings), so the evaluator can decide for one
contact without the database: real-time decisions, tests, and the property test that
holds it to the compiled SQL. ``load_facts`` reads what ``references(defn)`` names:
the events of the referenced names only, the lists referenced only, the company only
when a company field or an account condition needs it, and the company's other
contacts only for account conditions.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    and_,
    bindparam,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.orm import Session

from postwise.core.clock import as_utc
from postwise.core.errors import NotFound
from postwise.segments import jsonsql, timing
from postwise.segments.compiler import email_tests, property_test
from postwise.segments.references import Read, References
from postwise.storage.tables import Company, Contact, Event, ListMembership
from postwise.storage.types import UTCDateTime

_CONTACTS = cast(Table, Contact.__table__)
_COMPANIES = cast(Table, Company.__table__)
_EVENTS = cast(Table, Event.__table__)
_MEMBERSHIPS = cast(Table, ListMembership.__table__)


@dataclass(frozen=True)
class EventFact:
    name: str
    type: str
    properties: Mapping[str, Any]
    occurred_at: datetime


@dataclass
class ContactFacts:
    """One contact's row, its company's row, list statuses by list id, its events, and
    (for account conditions) the facts of every contact of its company, itself included."""

    contact: Mapping[str, Any]
    company: Mapping[str, Any] | None = None
    lists: Mapping[int, str] = field(default_factory=dict)
    events: Sequence[EventFact] = ()
    company_contacts: Sequence[ContactFacts] = ()


def load_facts(
    conn: Connection | Session,
    workspace_id: int,
    contact_id: int,
    now: datetime,
    refs: References,
    *,
    extra: Mapping[str, Any] | None = None,
) -> ContactFacts:
    """The facts ``refs`` needs about ``contact_id``; raises NotFound if it is gone.

    ``extra``: more columns (correlated to the contact row, the workspace id as
    ``bindparam("ws")``) to read with it, found in ``facts.contact`` under their names;
    a caller's way to save a statement. Pass the same column objects each time: the
    statement is built once per set of them.

    Events of a name are read only as far as its conditions look (``refs.reads``: each
    condition's property filters and window, in SQL; else ``refs.lookback``, the
    longest "last N"): a busy contact's years of page views are not read to decide
    "viewed pricing this week" or "ever viewed the VIP page". The facts are therefore
    good for evaluation at ``now`` (or, with windows only, later), not earlier.
    """
    # The contact's own events ride along in its row (one statement), unless an account
    # condition needs its colleagues' too.
    plan = None if refs.account_level else _plan_of(refs, True)
    params: dict[str, Any] = {"ws": workspace_id, "contact": contact_id}
    if plan is not None:
        params.update(plan.params(workspace_id, [contact_id], now))
    row = conn.execute(_contact_row(extra or {}, plan), params).first()
    if row is None:
        raise NotFound(f"no contact {contact_id}", code="contact_not_found", field="contact_id")
    contact = dict(row._mapping)
    embedded = contact.pop(_EVENTS_LABEL, None) if plan is not None else None
    company_id = contact.get("company_id")
    company = None
    if company_id is not None and (refs.uses_company or refs.account_level):
        found = conn.execute(
            select(_COMPANIES).where(
                _COMPANIES.c.workspace_id == workspace_id, _COMPANIES.c.id == company_id
            )
        ).first()
        company = dict(found._mapping) if found is not None else None
    rows = [contact]
    if refs.account_level and company_id is not None:
        peers = conn.execute(
            select(_CONTACTS).where(
                _CONTACTS.c.workspace_id == workspace_id,
                _CONTACTS.c.company_id == company_id,
                _CONTACTS.c.id != contact_id,
            )
        ).all()
        rows += [dict(p._mapping) for p in peers]
    ids = [int(r["id"]) for r in rows]
    lists = _lists(conn, workspace_id, ids, refs)
    if plan is not None:
        events = {contact_id: _decode(embedded or [])}
    else:
        events = _events(conn, workspace_id, ids, refs, now)
    facts = [
        ContactFacts(r, company, lists.get(int(r["id"]), {}), events.get(int(r["id"]), []))
        for r in rows
    ]
    if refs.account_level and company_id is not None:
        for one in facts:
            one.company_contacts = facts
    return facts[0]


_EVENTS_LABEL = "postwise_events"
# (extra columns, plan) -> (them, the contact row statement): callers pass a few fixed
# sets of extra columns, and plans live as long as the parsed definitions.
_rows: OrderedDict[tuple[Any, ...], tuple[Mapping[str, Any], _Plan | None, Any]] = OrderedDict()
_ROWS = 1024


def _contact_row(extra: Mapping[str, Any], plan: _Plan | None) -> Any:
    key = (*((name, id(column)) for name, column in extra.items()), id(plan))
    with _plans_lock:
        found = _rows.get(key)
        if (
            found is None
            or found[1] is not plan
            or any(found[0][n] is not c for n, c in extra.items())
        ):
            columns = [column.label(name) for name, column in extra.items()]
            if plan is not None:
                rows = plan.statement.subquery()
                columns.append(
                    select(jsonsql.json_rows(*rows.c))
                    .select_from(rows)
                    .scalar_subquery()
                    .label(_EVENTS_LABEL)
                )
            statement = select(_CONTACTS, *columns).where(
                _CONTACTS.c.workspace_id == bindparam("ws"), _CONTACTS.c.id == bindparam("contact")
            )
            found = (dict(extra), plan, statement)
            _rows[key] = found
            while len(_rows) > _ROWS:
                _rows.popitem(last=False)
        _rows.move_to_end(key)
        return found[2]


def _decode(rows: Sequence[Sequence[Any]]) -> list[EventFact]:
    """Events from ``json_rows`` of ``_EVENT_COLUMNS`` (a row two reads share, once)."""
    seen: set[int] = set()
    out = []
    for event_id, _contact_id, name, type_, properties, occurred_at in rows:
        if event_id in seen:
            continue
        seen.add(event_id)
        moment = (
            datetime.fromisoformat(occurred_at) if isinstance(occurred_at, str) else occurred_at
        )
        out.append(EventFact(str(name), str(type_), properties or {}, as_utc(moment)))
    return out


def _lists(
    conn: Connection | Session, workspace_id: int, ids: list[int], refs: References
) -> dict[int, dict[int, str]]:
    out: dict[int, dict[int, str]] = defaultdict(dict)
    if not refs.list_ids:
        return out
    rows = conn.execute(
        select(_MEMBERSHIPS.c.contact_id, _MEMBERSHIPS.c.list_id, _MEMBERSHIPS.c.status).where(
            _MEMBERSHIPS.c.workspace_id == workspace_id,
            _MEMBERSHIPS.c.contact_id.in_(ids),
            _MEMBERSHIPS.c.list_id.in_(sorted(refs.list_ids)),
        )
    )
    for contact_id, list_id, status in rows:
        out[int(contact_id)][int(list_id)] = str(status)
    return out


_CMP: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


def _bounds(read: Read, now: datetime) -> list[timing.MomentBound]:
    bounds = timing.window_bounds(read.window, now)
    if read.since_only:  # a follow-up counts after the window too
        bounds = [(cmp, bound) for cmp, bound in bounds if cmp in ("ge", "gt")]
    return bounds


@dataclass
class _Plan:
    """The events statement of one ``References``, built once: the workspace, the
    contacts and every time bound are parameters (bound ``i`` is ``_bounds`` of
    ``reads[i]``), so each decision only binds values and the compiled SQL is reused."""

    statement: Any
    reads: list[Read]
    spans: list[timedelta]  # bound ``l{i}`` is ``now - spans[i]`` (``refs.lookback``)

    def params(self, workspace_id: int, ids: list[int], now: datetime) -> dict[str, Any]:
        values: dict[str, Any] = {"ws": workspace_id, "ids": ids}
        values.update({f"l{i}": now - span for i, span in enumerate(self.spans)})
        for i, read in enumerate(self.reads):
            for j, (_cmp, bound) in enumerate(_bounds(read, now)):
                values[f"b{i}_{j}"] = bound
        return values


_EVENT_COLUMNS = (
    _EVENTS.c.id,
    _EVENTS.c.contact_id,
    _EVENTS.c.name,
    _EVENTS.c.type,
    _EVENTS.c.properties,
    _EVENTS.c.occurred_at,
)


def _plan(refs: References, single: bool) -> _Plan | None:
    """Every read of ``refs`` in one statement. For one contact, a read that ``enough``
    events decide is a subquery of its own that stops there (newest first, along the
    (workspace, name, contact, time) index); rows two reads share come back twice."""
    names = sorted(refs.all_event_names)
    if not names:
        return None
    reads: list[Read] = []
    spans: list[timedelta] = []
    mine = [
        _EVENTS.c.workspace_id == bindparam("ws"),
        _EVENTS.c.contact_id.in_(bindparam("ids", expanding=True)),
    ]

    def test(read: Read) -> ColumnElement[bool]:
        i = len(reads)
        reads.append(read)
        tests = [property_test(flt, _EVENTS.c.properties) for flt in read.where]
        if read.email is not None:
            tests += email_tests(read.email, _EVENTS.c.type, _EVENTS.c.properties)
        tests += [
            _CMP[cmp](_EVENTS.c.occurred_at, bindparam(f"b{i}_{j}", type_=UTCDateTime()))
            for j, (cmp, _bound) in enumerate(_bounds(read, _EPOCH))
        ]
        return and_(true(), *tests)

    whole = [n for n in names if n not in refs.reads and n not in refs.lookback]
    which: list[ColumnElement[bool]] = [_EVENTS.c.name.in_(whole)] if whole else []
    limited: list[Any] = []
    for name in names:
        if name in refs.reads:
            alternatives = []
            for read in refs.reads[name]:
                if read.enough is not None and single:
                    limited.append(
                        select(*_EVENT_COLUMNS)
                        .where(*mine, _EVENTS.c.name == name, test(read))
                        .order_by(_EVENTS.c.occurred_at.desc())
                        .limit(read.enough)
                        .subquery()
                    )
                else:
                    alternatives.append(test(read))
            if alternatives:
                which.append(and_(_EVENTS.c.name == name, or_(*alternatives)))
        elif name in refs.lookback:
            since = bindparam(f"l{len(spans)}", type_=UTCDateTime())
            spans.append(refs.lookback[name])
            which.append(and_(_EVENTS.c.name == name, _EVENTS.c.occurred_at >= since))
    parts: list[Any] = [select(*_EVENT_COLUMNS).where(*mine, or_(*which))] if which else []
    parts += [select(*sub.c) for sub in limited]
    return _Plan(parts[0] if len(parts) == 1 else union_all(*parts), reads, spans)


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # any instant: only the bounds' shape is used
# id(References) -> (the References, its plans by "one contact?"): definitions are
# parsed once per version, so their references (and merged ones, cached by membership)
# are long-lived objects; the identity check guards against a reused id.
_plans: OrderedDict[int, tuple[References, dict[bool, _Plan | None]]] = OrderedDict()
_plans_lock = threading.Lock()
_PLANS = 1024


def _plan_of(refs: References, single: bool) -> _Plan | None:
    with _plans_lock:
        entry = _plans.get(id(refs))
        if entry is None or entry[0] is not refs:
            entry = (refs, {})
            _plans[id(refs)] = entry
            while len(_plans) > _PLANS:
                _plans.popitem(last=False)
        _plans.move_to_end(id(refs))
        plans = entry[1]
        if single not in plans:
            plans[single] = _plan(refs, single)
        return plans[single]


def _events(
    conn: Connection | Session,
    workspace_id: int,
    ids: list[int],
    refs: References,
    now: datetime,
) -> dict[int, list[EventFact]]:
    out: dict[int, list[EventFact]] = defaultdict(list)
    plan = _plan_of(refs, len(ids) == 1)
    if plan is None:
        return out
    seen: set[int] = set()
    for event_id, contact_id, name, type_, properties, occurred_at in conn.execute(
        plan.statement, plan.params(workspace_id, ids, now)
    ):
        if event_id in seen:
            continue
        seen.add(event_id)
        out[int(contact_id)].append(
            EventFact(str(name), str(type_), properties or {}, as_utc(occurred_at))
        )
    return out
