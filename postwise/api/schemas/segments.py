"""Bodies and answers of ``/api/segments`` (docs/segments.md).

The definition is taken as a JSON object and checked by the segment parser, not here:
it names the offending node's path (``all[2].any[0].count``) in a 422, which a Pydantic
model of this module could not do for nested definitions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from postwise.api.schemas import StrictModel

Status = Literal["active", "paused"]


class DefinitionIn(StrictModel):
    definition: dict[str, Any] = Field(description="The segment definition (docs/segments.md).")


class SegmentIn(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=1000)
    definition: dict[str, Any]
    status: Status = "active"


class SegmentPatch(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)
    definition: dict[str, Any] | None = None
    status: Status | None = None


class SegmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    definition: dict[str, Any]
    summary: str = Field(description="The definition in one line.")
    version: int
    status: str
    member_count: int = Field(description="Members at the last refresh, kept by real-time moves.")
    created_at: datetime
    updated_at: datetime
    refreshed_at: datetime | None


class SegmentList(BaseModel):
    data: list[SegmentOut]


class ValidationOut(BaseModel):
    valid: bool
    summary: str


class PreviewOut(BaseModel):
    count: int
    sample: list[str] = Field(description="Emails of up to 20 members, by contact id.")
    seconds: float = Field(description="How long the count took.")


class MemberOut(BaseModel):
    contact_id: int
    email: str
    entered_at: datetime


class MemberPage(BaseModel):
    data: list[MemberOut]
    next_cursor: str | None


class RefreshOut(BaseModel):
    segment_id: int
    members: int
    entered: int
    exited: int
    seconds: float


class StayOut(BaseModel):
    segment_id: int
    segment: str
    entered_at: datetime
    exited_at: datetime | None


class HistoryOut(BaseModel):
    data: list[StayOut]
