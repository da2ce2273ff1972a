"""A workspace's saved segments, parsed once per version, in dependency order.

Membership work (a refresh, a contact's re-evaluation) needs each active segment's
parsed definition and what it references. The whole catalog is cached per process by
(workspace, stamp): the stamp is one aggregate over the workspace's segment rows (count,
highest id, sum of versions, latest ``updated_at``, how many are active, total name
length), which every save, pause, rename, creation and deletion changes, and over its
attribute declarations (a parsed definition holds the declared type of each attribute it
names; a type is changed by deleting and declaring again). So a steady
stream of events costs one small indexed aggregate per job, not a read of every
definition; a stale entry is never used. ``load`` returns the segments so that every
segment comes after the segments it references (cycles are refused when a definition is
saved), which is the order in which a membership change must flow to the segments that
depend on it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast

import structlog
from sqlalchemy import ColumnElement, Table, bindparam, case, event, func, select
from sqlalchemy.orm import Session

from postwise.segments import changes
from postwise.segments.context import load_context
from postwise.segments.definition import Definition, InvalidSegment, parse_definition
from postwise.segments.references import References, references
from postwise.storage.tables import AttributeDefinition, Segment
from postwise.storage.tenancy import workspace_of

log = structlog.get_logger(__name__)
_CACHE_SIZE = 2048


@dataclass(frozen=True)
class Loaded:
    """One saved segment ready for membership work."""

    id: int
    workspace_id: int
    name: str
    version: int
    definition: Definition
    refs: References
    triggers: frozenset[str]  # change keys (``changes``) that can move a contact in or out

    @property
    def time_dependent(self) -> bool:
        return bool(self.refs.time_dependent)

    @property
    def account_level(self) -> bool:
        return bool(self.refs.account_level)

    @property
    def uses_segments(self) -> frozenset[int]:
        return frozenset(int(s) for s in self.refs.segment_ids)

    def triggered_by(self, keys: set[str]) -> bool:
        if changes.ANYTHING in keys or keys & self.triggers:
            return True
        return changes.ANY_EVENT in keys and any(k.startswith("event:") for k in self.triggers)


def triggers_of(refs: References) -> frozenset[str]:
    """The change keys (``changes``) that can alter a definition with these references."""
    keys = {changes.event_key(name) for name in refs.all_event_names}
    keys.update(changes.field_key(name) for name in refs.fields)
    if refs.uses_company:
        keys.add(changes.COMPANY)  # the contact moved to another company
    if refs.uses_lists:
        keys.add(changes.LIST)
    return frozenset(keys)


K = TypeVar("K")
V = TypeVar("V")


class _Cache(Generic[K, V]):
    """A small thread-safe LRU: workers run jobs on threads."""

    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self._lock = threading.Lock()
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: K, item: V) -> None:
        with self._lock:
            self._items[key] = item
            while len(self._items) > self._size:
                self._items.popitem(last=False)


# Keys carry the workspace's stamp: a definition inlines the segments it references, so
# a save of any of them must miss the cache.
_cache: _Cache[tuple[int, int, int, str], Loaded] = _Cache()  # (ws, id, version, stamp)
_orders: _Cache[tuple[int, str], list[Loaded]] = _Cache(256)  # (ws, stamp)


def _others(session: Session, segment_id: int | None) -> dict[int, dict[str, Any]]:
    """The other saved definitions, for segment references and cycle checks."""
    stmt = select(Segment.id, Segment.definition)
    if segment_id is not None:
        stmt = stmt.where(Segment.id != segment_id)
    return {row.id: row.definition for row in session.execute(stmt)}


def parse(
    session: Session, document: Mapping[str, Any], *, segment_id: int | None = None
) -> Definition:
    """Parse ``document`` in this workspace, as segment ``segment_id`` (None: a new one)."""
    context = load_context(session, _others(session, segment_id), segment_id=segment_id)
    return parse_definition(dict(document), context)


class SegmentRow(Protocol):
    """What parsing needs of a saved segment: a ``Segment`` or a row of ``_rows``."""

    @property
    def id(self) -> int: ...
    @property
    def workspace_id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def definition(self) -> dict[str, Any]: ...


_SEGMENTS = cast(Table, Segment.__table__)
_ROWS = (
    select(
        _SEGMENTS.c.id,
        _SEGMENTS.c.workspace_id,
        _SEGMENTS.c.name,
        _SEGMENTS.c.version,
        _SEGMENTS.c.status,
        _SEGMENTS.c.definition,
    )
    .where(_SEGMENTS.c.workspace_id == bindparam("workspace_id"))
    .order_by(_SEGMENTS.c.id)
)


def _rows(session: Session) -> list[Any]:
    """Every segment of the session's workspace: one cached Core statement, no ORM
    objects (this runs for every real-time job and every noted transaction)."""
    found = session.connection().execute(_ROWS, {"workspace_id": workspace_of(session)})
    return list(found)


_ATTRIBUTES = cast(Table, AttributeDefinition.__table__)
# A parsed definition holds the declared type of each custom attribute it names, so a type
# declared anew (an attribute deleted and defined again) must change the stamp too: the
# attribute ids and, weighted by id, their types (SQLite may reuse a deleted highest id).
_TYPE_CODE = case(
    (_ATTRIBUTES.c.type == "string", 1),
    (_ATTRIBUTES.c.type == "number", 2),
    (_ATTRIBUTES.c.type == "boolean", 3),
    (_ATTRIBUTES.c.type == "date", 4),
    (_ATTRIBUTES.c.type == "list", 5),
    else_=6,
)
_ATTRIBUTE_STAMP = [
    select(value).where(_ATTRIBUTES.c.workspace_id == bindparam("workspace_id")).scalar_subquery()
    for value in (
        func.count(),
        func.max(_ATTRIBUTES.c.id),
        func.sum(_ATTRIBUTES.c.id * _TYPE_CODE),
    )
]
_STAMP = select(
    func.count(),
    func.max(_SEGMENTS.c.id),
    func.sum(_SEGMENTS.c.version),
    func.max(_SEGMENTS.c.updated_at),
    func.sum(case((_SEGMENTS.c.status == "active", 1), else_=0)),
    func.sum(func.length(_SEGMENTS.c.name)),
    *_ATTRIBUTE_STAMP,
).where(_SEGMENTS.c.workspace_id == bindparam("workspace_id"))


# Saves through the ORM in this process bump the workspace's generation, which is part of
# the stamp: belt and braces for what the aggregate cannot see (a save under a frozen
# clock that keeps every aggregate equal, ids reused after a database is emptied).
_generations: dict[int, int] = {}


@event.listens_for(Segment, "after_insert")
@event.listens_for(Segment, "after_update")
@event.listens_for(Segment, "after_delete")
@event.listens_for(AttributeDefinition, "after_insert")
@event.listens_for(AttributeDefinition, "after_update")
@event.listens_for(AttributeDefinition, "after_delete")
def _saved(_mapper: Any, _connection: Any, target: Segment | AttributeDefinition) -> None:
    _generations[target.workspace_id] = _generations.get(target.workspace_id, 0) + 1


# A column another module reads in the stamp's statement, and its parameters.
Rider = tuple[ColumnElement[Any], Mapping[str, Any]]
_with_rider: dict[int, Any] = {}  # id(column) -> the stamp statement with it


def _stamp(session: Session, rider: Rider | None = None) -> str:
    """What changes whenever any segment of the workspace is saved, created, deleted,
    paused or renamed: one indexed aggregate, no definitions read (``_rows`` is read only
    when this changed). ``rider`` is read in the same statement and dropped."""
    workspace_id = workspace_of(session)
    params: dict[str, Any] = {"workspace_id": workspace_id}
    statement: Any = _STAMP
    if rider is not None:
        column, extra = rider
        statement = _with_rider.get(id(column))
        if statement is None:  # riders are module-level columns: a handful at most
            statement = _with_rider[id(column)] = _STAMP.add_columns(column)
        params.update(extra)
    row = session.connection().execute(statement, params).one()
    values = ["" if v is None else str(v) for v in row[: len(_STAMP.selected_columns)]]
    return "|".join([str(_generations.get(workspace_id, 0)), *values])


def loaded(session: Session, segment: SegmentRow, *, stamp: str | None = None) -> Loaded:
    """``segment`` parsed (once per version of it and of the segments it may reference)."""
    if stamp is None:
        stamp = _stamp(session)
    key = (segment.workspace_id, segment.id, segment.version, stamp)
    item = _cache.get(key)
    if item is None:
        definition = parse(session, segment.definition, segment_id=segment.id)
        refs = references(definition)
        item = Loaded(
            id=segment.id,
            workspace_id=segment.workspace_id,
            name=segment.name,
            version=segment.version,
            definition=definition,
            refs=refs,
            triggers=triggers_of(refs),
        )
        _cache.put(key, item)
    return item


def _ordered(items: list[Loaded]) -> list[Loaded]:
    """Each segment after those it uses (depth-first; input order breaks ties)."""
    by_id = {item.id: item for item in items}
    done: set[int] = set()
    out: list[Loaded] = []

    def visit(item: Loaded, path: frozenset[int]) -> None:
        if item.id in done or item.id in path:
            return
        for used in sorted(item.uses_segments):
            if used in by_id:
                visit(by_id[used], path | {item.id})
        done.add(item.id)
        out.append(item)

    for item in items:
        visit(item, frozenset())
    return out


_last: dict[int, list[Loaded]] = {}  # workspace id -> what ``load`` returned last


def last_loaded(workspace_id: int) -> list[Loaded] | None:
    """What ``load`` returned last in this process for the workspace (no query; maybe
    stale): a guess of the segments, to be checked by the next ``load``."""
    return _last.get(workspace_id)


def load(session: Session, *, rider: Rider | None = None) -> list[Loaded]:
    """The workspace's active segments, each after the segments it references.

    A stored definition that no longer parses (say an attribute it names was deleted)
    is left out with a warning rather than stopping every other segment's updates.
    ``rider``: a column to evaluate in the stamp's statement (membership takes its
    advisory locks so, saving a round trip).
    """
    stamp = _stamp(session, rider)  # a tenant session: never mix workspaces here
    key = (workspace_of(session), stamp)
    found = _orders.get(key)
    if found is not None:
        _last[key[0]] = found
        return found
    rows = _rows(session)
    items = []
    for row in rows:
        if row.status != "active":
            continue
        try:
            items.append(loaded(session, row, stamp=stamp))
        except InvalidSegment as exc:
            log.warning("segments.unusable", segment_id=row.id, field=exc.field, error=str(exc))
    ordered = _ordered(items)
    if _stamp(session) == stamp:  # no save landed between the stamp and the rows
        _orders.put(key, ordered)
        _last[key[0]] = ordered
    return ordered


def referenced_ids(document: Any) -> set[int]:
    """Segment ids a raw definition names directly (no parsing: works on stale documents)."""
    found: set[int] = set()
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            target = node.get("segment")
            if isinstance(target, int) and not isinstance(target, bool):
                found.add(target)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def dependents(session: Session, segment_id: int, *, transitive: bool = False) -> list[Segment]:
    """Saved segments whose definitions reference ``segment_id`` (directly, or through
    others with ``transitive``), active or not."""
    rows = list(session.scalars(select(Segment).order_by(Segment.id)))
    uses = {row.id: referenced_ids(row.definition) for row in rows}
    wanted: set[int] = set()
    frontier = {segment_id}
    while frontier:
        found = {rid for rid, used in uses.items() if used & frontier} - wanted - {segment_id}
        wanted |= found
        frontier = found if transitive else set()
    return [row for row in rows if row.id in wanted]
