"""Keyset pagination with opaque cursors: stable under inserts, cheap on any table size."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from postwise.core.errors import ValidationFailed

T = TypeVar("T")
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": last_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value: Any = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after = value["after"]
        # Ids are signed 64-bit on both backends; anything else was not issued by us.
        if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after < 2**63:
            raise TypeError
        return after
    except (ValueError, KeyError, TypeError):
        raise ValidationFailed(
            "cursor is not one this API returned; pass next_cursor back unchanged",
            code="invalid_cursor",
            field="cursor",
        ) from None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(
            f"limit must be between 1 and {MAX_LIMIT}", code="invalid_limit", field="limit"
        )
    return limit


def keyset_page(
    session: Session,
    stmt: Select[Any],
    key: InstrumentedAttribute[int],
    cursor: str | None,
    limit: int,
) -> Page[Any]:
    """One page of ``stmt`` (filters applied, no order or limit) ordered by ``key``."""
    limit = check_limit(limit)
    after = decode_cursor(cursor)
    if after is not None:
        stmt = stmt.where(key > after)
    rows = list(session.scalars(stmt.order_by(key).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(getattr(rows[-1], key.key)) if more else None)
