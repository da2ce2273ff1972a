"""Response models of the event reading endpoints (``api/routes/events.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from postwise.api.schemas import PageOut


class EventOut(BaseModel):
    id: int
    type: str = Field(description="track, page, screen, identify, group, or an email event.")
    name: str
    contact_id: int | None
    anonymous_id: str | None
    user_id: str | None = Field(description="The Segment userId the event was sent with.")
    actor: Literal["human", "machine"] | None = Field(
        description="Who caused it, for events that are labelled (email opens and clicks): "
        "from properties.machine. None when the event carries no label."
    )
    actor_reason: str | None = Field(
        description="Why, e.g. apple_mpp or security_scanner (properties.machine_reason)."
    )
    properties: dict[str, Any]
    context: dict[str, Any]
    message_id: str | None
    occurred_at: datetime
    received_at: datetime


class EventPage(PageOut[EventOut]):
    pass


class PropertyKeyOut(BaseModel):
    key: str
    types: list[str] = Field(description="JSON types seen: string, number, boolean, ...")


class CatalogEntry(BaseModel):
    name: str
    types: list[str] = Field(description="Event types seen with this name in the sample.")
    total: int
    last_30_days: int
    first_seen: datetime
    last_seen: datetime
    property_keys: list[PropertyKeyOut] = Field(
        description="Top-level property keys of the `sampled` most recent events."
    )
    sampled: int


class Catalog(BaseModel):
    data: list[CatalogEntry]
