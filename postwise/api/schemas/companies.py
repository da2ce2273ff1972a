"""Companies (accounts): what a client sends and what it gets back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from postwise.api.schemas import PageOut, StrictModel
from postwise.contacts.fields import REVENUE_BANDS, SIZE_BANDS


class CompanyFields(StrictModel):
    name: str | None = None
    industry: str | None = None
    employee_count: int | None = Field(
        default=None, description="Sets size_band from the count when given."
    )
    size_band: str | None = Field(default=None, description=f"One of: {', '.join(SIZE_BANDS)}.")
    revenue_band: str | None = Field(
        default=None, description=f"One of: {', '.join(REVENUE_BANDS)}."
    )
    country: str | None = Field(default=None, description="ISO 3166-1 alpha-2 code.")
    attributes: dict[str, Any] | None = Field(
        default=None,
        description="Declared company attributes (POST /api/attributes); merged into the "
        "stored ones.",
    )


class CompanyIn(CompanyFields):
    domain: str = Field(
        description="The company's web domain; a URL or 'www.' is reduced to it.",
        examples=["initech.com"],
    )


class CompanyPatch(CompanyFields):
    domain: str | None = None


class CompanyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    domain: str
    name: str | None
    industry: str | None
    employee_count: int | None
    size_band: str | None
    revenue_band: str | None
    country: str | None
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class CompanyDetail(CompanyOut):
    contact_count: int = Field(description="Contacts linked to the company.")


class CompanyPage(PageOut[CompanyOut]):
    pass
