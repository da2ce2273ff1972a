"""Bodies and answers of ``/api/templates`` (docs/messages.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from postwise.api.schemas import MAX_ID, FieldErrorOut, StrictModel

_SOURCE = 512 * 1024


class TemplateIn(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["marketing", "transactional"] = "marketing"
    subject: str = Field(min_length=1, max_length=2000)
    preheader: str = Field(default="", max_length=2000)
    html: str = Field(default="", max_length=_SOURCE, description="Jinja2 HTML; CSS is inlined.")
    text: str = Field(default="", max_length=_SOURCE, description="Empty: derived from the HTML.")
    mjml: str = Field(default="", max_length=_SOURCE, description="MJML source; replaces html.")


class TemplatePatch(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    kind: Literal["marketing", "transactional"] | None = None
    subject: str | None = Field(default=None, min_length=1, max_length=2000)
    preheader: str | None = Field(default=None, max_length=2000)
    html: str | None = Field(default=None, max_length=_SOURCE)
    text: str | None = Field(default=None, max_length=_SOURCE)
    mjml: str | None = Field(default=None, max_length=_SOURCE)


class TemplateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: str
    subject: str
    preheader: str
    html: str
    text: str
    mjml: str
    version: int
    created_at: datetime
    updated_at: datetime


class TemplateList(BaseModel):
    data: list[TemplateOut]


class ValidationOut(BaseModel):
    valid: bool
    errors: list[FieldErrorOut]


class PreviewIn(StrictModel):
    contact_id: int = Field(ge=1, le=MAX_ID)
    data: dict[str, Any] = Field(default_factory=dict, description="Event properties / API data.")


class PreviewOut(BaseModel):
    subject: str
    preheader: str
    html: str
    text: str
    raw: str = Field(description="The whole message as a transport would receive it, unsigned.")
