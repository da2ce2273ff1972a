"""Attribute definitions: the declared custom fields of contacts and companies."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from postwise.api.schemas import PageOut, StrictModel
from postwise.contacts.attributes import MAX_DESCRIPTION, AttributeType, Entity


class AttributeIn(StrictModel):
    entity: Entity
    name: str = Field(
        examples=["plan"],
        description="Lower-case letters, digits and '_', starting with a letter; at most 64.",
    )
    type: AttributeType
    description: str = Field(default="", max_length=MAX_DESCRIPTION)


class AttributePatch(StrictModel):
    description: str = Field(max_length=MAX_DESCRIPTION)


class AttributeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    entity: Entity
    name: str
    type: AttributeType
    description: str
    created_at: datetime


class AttributePage(PageOut[AttributeOut]):
    pass
