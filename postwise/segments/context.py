"""The workspace facts a definition is checked against (``definition.SchemaContext``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from postwise.segments.definition import MAX_DEPTH, SchemaContext
from postwise.segments.fields import FIELDS, FieldRegistry
from postwise.storage.tables import AttributeDefinition


def load_context(
    session: Session,
    segments: Mapping[int, Any] | None = None,
    *,
    segment_id: int | None = None,
    fields: FieldRegistry = FIELDS,
    max_depth: int = MAX_DEPTH,
) -> SchemaContext:
    """Declared attribute types from ``session`` (a tenant session, so this workspace's
    only); ``segments`` are the other segments' raw documents by id, supplied by the
    caller that stores them; ``segment_id`` is the segment being saved, if any."""
    rows = session.execute(
        select(AttributeDefinition.entity, AttributeDefinition.name, AttributeDefinition.type)
    ).all()
    return SchemaContext(
        attributes={(str(entity), str(name)): str(kind) for entity, name, kind in rows},
        segments=dict(segments or {}),
        fields=fields,
        max_depth=max_depth,
        segment_id=segment_id,
    )
