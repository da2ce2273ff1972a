"""Preview of a definition before it is saved: how many, who (a sample), how fast.

The count runs the compiled SQL exactly as a refresh would, so the number shown is
the number the saved segment will have; ``seconds`` is the count's own time, the
figure a user needs to judge a definition on a large workspace.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from postwise.core.clock import utcnow
from postwise.segments import catalog
from postwise.segments.compiler import compile_members, without_jit
from postwise.storage.tables import Contact
from postwise.storage.tenancy import workspace_of

SAMPLE_SIZE = 20


@dataclass(frozen=True)
class Preview:
    count: int
    sample: list[str]
    seconds: float


def preview(
    session: Session,
    document: Mapping[str, Any],
    *,
    segment_id: int | None = None,
    now: datetime | None = None,
    sample_size: int = SAMPLE_SIZE,
) -> Preview:
    """Count and sample the contacts ``document`` selects now (422 if it does not parse)."""
    definition = catalog.parse(session, document, segment_id=segment_id)
    members = compile_members(
        definition, workspace_id=workspace_of(session), now=now or utcnow()
    ).subquery()
    without_jit(session)
    started = time.perf_counter()
    count = int(session.scalar(select(func.count()).select_from(members)) or 0)
    seconds = time.perf_counter() - started
    sample = list(
        session.scalars(
            select(Contact.email)
            .where(Contact.id.in_(select(members.c[0])))
            .order_by(Contact.id)
            .limit(sample_size)
        )
    )
    return Preview(count, sample, seconds)
