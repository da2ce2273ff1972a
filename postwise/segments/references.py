"""What a definition depends on, so a change re-evaluates only the segments it can move.

Membership keeps itself current by asking, for an incoming event or a changed contact,
which segments mention that event name, field or list (docs/segments.md#membership).
Referenced segments are compiled inline, so their dependencies are included here too.
``time_dependent`` says the answer can change with the clock alone (a sliding window, a
relative date, an anniversary), which only a scheduled re-evaluation can notice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from postwise.segments import timing
from postwise.segments.definition import (
    AccountCondition,
    AllGroup,
    AnyGroup,
    Count,
    Definition,
    EmailCondition,
    EventCondition,
    FieldCondition,
    ListCondition,
    Node,
    NotGroup,
    PropertyFilter,
    SegmentCondition,
    Window,
)

_RELATIVE_FIELD_OPS = frozenset(
    {"within_last", "more_than_ago", "within_next", "anniversary_within"}
)
_RELATIVE_TIME_TESTS = frozenset({"within_last", "more_than_ago"})


@dataclass(frozen=True)
class Read:
    """Which events of one name one condition looks at: those passing its property
    filters (or, ``email``, its email tests) within its window (``since_only``: the
    window's lower bound only, for a follow-up, which counts after the window too).
    ``enough``: that many of them decide the condition (a count that reads the same for
    every number from there up), so a busy contact's read can stop there. ``Read()`` is
    every event of the name."""

    where: tuple[PropertyFilter, ...] = ()
    window: Window | None = None
    since_only: bool = False
    email: EmailCondition | None = None
    enough: int | None = None

    @property
    def everything(self) -> bool:
        window = self.window
        unbounded = window is None or (window.last is None and not window.between)
        return not self.where and self.email is None and self.enough is None and unbounded


def enough(count: Count | None) -> int:
    """How many matching events decide ``count``: from this number up it never changes."""
    if count is None:
        return 1
    values = count.value if isinstance(count.value, list) else [count.value]
    if count.op == "gte":
        return max(int(values[0]), 1)
    return max(int(v) for v in values) + 1


@dataclass(frozen=True)
class References:
    event_names: frozenset[str]  # behaviour conditions (not_followed_by included)
    email_event_names: frozenset[str]  # "Email Opened", "Unsubscribed", ...
    email_kinds: frozenset[str]  # "opened", "unsubscribed", ...
    fields: frozenset[str]  # "contact.seniority", "company.attributes.tier", ...
    list_ids: frozenset[int]
    segment_ids: frozenset[int]  # every segment reached, directly or through another
    time_dependent: bool
    account_level: bool
    # Per event name, how far back any condition looks ("last N days/hours"); a name
    # missing here is read over all time (ever, between dates, first/last, a follow-up
    # of an unbounded one). ``load_facts`` reads no older events than this.
    lookback: Mapping[str, timedelta] = field(default_factory=dict)
    # Per event name, the reads of every condition on it (``load_facts`` asks for their
    # union, property filters included); a name missing here is read whole.
    reads: Mapping[str, tuple[Read, ...]] = field(default_factory=dict)

    @property
    def uses_lists(self) -> bool:
        return bool(self.list_ids)

    @property
    def uses_company(self) -> bool:
        return any(name.startswith("company.") for name in self.fields)

    @property
    def all_event_names(self) -> frozenset[str]:
        return self.event_names | self.email_event_names


class _Collector:
    def __init__(self, defn: Definition) -> None:
        self.defn = defn
        self.events: set[str] = set()
        self.emails: set[str] = set()
        self.kinds: set[str] = set()
        self.fields: set[str] = set()
        self.lists: set[int] = set()
        self.segments: set[int] = set()
        self.time = False
        self.account = False
        self.windows: dict[str, timedelta | None] = {}
        self.reads: dict[str, list[Read]] = {}

    def look(self, name: str, window: Window | None, read: Read | None = None) -> None:
        """Record how far back ``name`` is read; None (all time) wins over any span.
        ``read``: which of its events the condition needs (default: all in ``window``)."""
        read = read if read is not None else Read(window=window)
        known = self.reads.setdefault(name, [])
        if read not in known:
            known.append(read)
        span = None
        if window is not None and window.last is not None:
            span = timing.span(window.last.days, window.last.hours)
        if name not in self.windows:
            self.windows[name] = span
            return
        before = self.windows[name]
        self.windows[name] = None if before is None or span is None else max(before, span)

    def visit(self, node: Node) -> None:
        if isinstance(node, AllGroup):
            for child in node.all:
                self.visit(child)
        elif isinstance(node, AnyGroup):
            for child in node.any:
                self.visit(child)
        elif isinstance(node, NotGroup):
            self.visit(node.not_)
        elif isinstance(node, FieldCondition):
            self.fields.add(node.field)
            self.time |= node.op in _RELATIVE_FIELD_OPS
        elif isinstance(node, EventCondition):
            self.event(node)
        elif isinstance(node, EmailCondition):
            self.emails.add(node.event_name)
            self.kinds.add(node.email)
            self.look(
                node.event_name,
                node.window,
                Read(window=node.window, email=node, enough=enough(node.count)),
            )
            self.time |= node.window is not None and node.window.last is not None
        elif isinstance(node, ListCondition):
            self.lists.add(node.list)
        elif isinstance(node, SegmentCondition):
            if node.segment not in self.segments:
                self.segments.add(node.segment)
                self.visit(self.defn.segments[node.segment])
        elif isinstance(node, AccountCondition):
            self.account = True
            self.visit(node.account.where)

    def event(self, node: EventCondition) -> None:
        self.events.add(node.event)
        bounded = node.first is None and node.last is None
        window = node.window if bounded else None
        counted = bounded and node.aggregate is None and node.not_followed_by is None
        decides = enough(node.count) if counted else None
        self.look(node.event, window, Read(tuple(node.where), window, enough=decides))
        if node.not_followed_by is not None:
            # a follow-up counts from the last first event on, which is in its window
            follow = node.not_followed_by
            self.events.add(follow.event)
            self.look(follow.event, node.window, Read(tuple(follow.where), node.window, True))
        self.time |= node.window is not None and node.window.last is not None
        for test in (node.first, node.last):
            self.time |= test is not None and test.op in _RELATIVE_TIME_TESTS


def references(defn: Definition) -> References:
    found = _Collector(defn)
    found.visit(defn.root)
    return References(
        event_names=frozenset(found.events),
        email_event_names=frozenset(found.emails),
        email_kinds=frozenset(found.kinds),
        fields=frozenset(found.fields),
        list_ids=frozenset(found.lists),
        segment_ids=frozenset(found.segments),
        time_dependent=found.time,
        account_level=found.account,
        lookback={name: span for name, span in found.windows.items() if span is not None},
        reads={
            name: tuple(reads)
            for name, reads in found.reads.items()
            if not any(read.everything for read in reads)
        },
    )


def merged(many: Sequence[References]) -> References:
    """What any of these definitions depends on: one fact load serves them all."""
    names = [r.all_event_names for r in many]
    every = frozenset().union(*names)
    lookback: dict[str, timedelta] = {}
    reads: dict[str, tuple[Read, ...]] = {}
    for name in every:
        readers = [r for r in many if name in r.all_event_names]
        if all(name in r.lookback for r in readers):
            lookback[name] = max(r.lookback[name] for r in readers)
        if all(name in r.reads for r in readers):
            found: list[Read] = []
            for r in readers:
                found += [read for read in r.reads[name] if read not in found]
            reads[name] = tuple(found)
    return References(
        event_names=frozenset().union(*(r.event_names for r in many)),
        email_event_names=frozenset().union(*(r.email_event_names for r in many)),
        email_kinds=frozenset().union(*(r.email_kinds for r in many)),
        fields=frozenset().union(*(r.fields for r in many)),
        list_ids=frozenset().union(*(r.list_ids for r in many)),
        segment_ids=frozenset().union(*(r.segment_ids for r in many)),
        time_dependent=any(r.time_dependent for r in many),
        account_level=any(r.account_level for r in many),
        lookback=lookback,
        reads=reads,
    )
