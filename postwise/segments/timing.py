"""What every time-based condition means, as bounds that SQL and Python both apply.

One module turns windows, absolute dates and relative dates into plain comparisons
(``("ge", instant)``, ``("lt", "2026-01-31")``), so the compiler and the evaluator cannot
drift apart on a boundary. The rules (docs/segments.md#time):

* Everything is UTC. A date-only bound (``2026-01-31``) stands for the whole UTC day:
  ``lte``/``between`` include it to its last microsecond, ``gt`` starts the next day.
* ``last N days/hours`` of events: ``occurred_at >= now - N`` (no upper bound: an event
  stamped slightly ahead by a client clock still counts). ``between [a, b]``: both ends
  included. ``ever``: no bound.
* Relative field tests: ``within_last N``: ``now - N <= t <= now``; ``more_than_ago N``:
  ``t < now - N``; ``within_next N``: ``now <= t <= now + N``. On day fields (custom date
  attributes) ``now`` is today's UTC date and N counts whole days.
* ``anniversary_within N``: the day's month-day falls on one of today .. today + N; a
  29 February counts on 28 February in common years.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Literal

Cmp = Literal["ge", "gt", "le", "lt", "eq", "ne"]
MomentBound = tuple[Cmp, datetime]
DayBound = tuple[Cmp, str]


def span(days: int | None = None, hours: int | None = None) -> timedelta:
    return timedelta(days=days or 0, hours=hours or 0)


def parse_moment(value: str) -> tuple[datetime, bool]:
    """An ISO date or date-time (naive ones are UTC) and whether it was a date alone.

    Raises ValueError for anything else.
    """
    text = value.strip()
    if len(text) == 10:
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=UTC), True
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC), False


def day_of(value: str) -> str:
    """The UTC calendar day of a date or date-time, as ``YYYY-MM-DD``."""
    return parse_moment(value)[0].date().isoformat()


def moment_bounds(op: str, value: object, now: datetime) -> list[MomentBound]:
    """Bounds on an instant for a datetime field's ``op value``."""
    if op in ("within_last", "more_than_ago", "within_next"):
        assert isinstance(value, dict)
        delta = span(value.get("days"), value.get("hours"))
        if op == "within_last":
            return [("ge", now - delta), ("le", now)]
        if op == "more_than_ago":
            return [("lt", now - delta)]
        return [("ge", now), ("le", now + delta)]
    if op == "between":
        assert isinstance(value, list | tuple)
        return moment_bounds("gte", value[0], now) + moment_bounds("lte", value[1], now)
    assert isinstance(value, str)
    moment, whole_day = parse_moment(value)
    next_day = moment + timedelta(days=1)
    if op == "gt":
        return [("ge", next_day)] if whole_day else [("gt", moment)]
    if op == "gte":
        return [("ge", moment)]
    if op == "lt":
        return [("lt", moment)]
    if op == "lte":
        return [("lt", next_day)] if whole_day else [("le", moment)]
    raise ValueError(f"no instant bounds for {op}")


def day_bounds(op: str, value: object, now: datetime) -> list[DayBound]:
    """Bounds on a ``YYYY-MM-DD`` day for a date field's ``op value``."""
    today = now.astimezone(UTC).date()
    if op in ("within_last", "more_than_ago", "within_next"):
        assert isinstance(value, dict)
        delta = timedelta(days=value.get("days") or 0)
        if op == "within_last":
            return [("ge", (today - delta).isoformat()), ("le", today.isoformat())]
        if op == "more_than_ago":
            return [("lt", (today - delta).isoformat())]
        return [("ge", today.isoformat()), ("le", (today + delta).isoformat())]
    if op == "between":
        assert isinstance(value, list | tuple)
        return [("ge", day_of(value[0])), ("le", day_of(value[1]))]
    assert isinstance(value, str)
    cmp: dict[str, Cmp] = {
        "eq": "eq",
        "neq": "ne",
        "gt": "gt",
        "gte": "ge",
        "lt": "lt",
        "lte": "le",
    }
    return [(cmp[op], day_of(value))]


def window_bounds(window: object, now: datetime) -> list[MomentBound]:
    """Bounds on ``occurred_at`` for an event window (a ``definition.Window`` or None)."""
    if window is None:
        return []
    last = getattr(window, "last", None)
    if last is not None:
        return [("ge", now - span(last.days, last.hours))]
    between = getattr(window, "between", None)
    if between is not None:
        return moment_bounds("between", list(between), now)
    return []


def anniversary_days(now: datetime, days: int) -> list[str]:
    """The ``MM-DD`` of today .. today + days (29 February joins 28 February in common
    years)."""
    today = now.astimezone(UTC).date()
    out: list[str] = []
    for offset in range(days + 1):
        day = today + timedelta(days=offset)
        out.append(day.strftime("%m-%d"))
        if day.month == 2 and day.day == 28 and not _leap(day.year):
            out.append("02-29")
    return sorted(set(out))


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def holds(cmp: Cmp, left: object, right: object) -> bool:
    """Python's reading of one bound (``left`` is never None here)."""
    if cmp == "ge":
        return left >= right  # type: ignore[operator]
    if cmp == "gt":
        return left > right  # type: ignore[operator]
    if cmp == "le":
        return left <= right  # type: ignore[operator]
    if cmp == "lt":
        return left < right  # type: ignore[operator]
    if cmp == "eq":
        return left == right
    return left != right
