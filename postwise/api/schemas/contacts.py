"""Contacts, their timeline and the bulk upsert: what a client sends and gets back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from postwise.api.schemas import MAX_ID, FieldErrorOut, PageOut, StrictModel
from postwise.api.schemas.companies import CompanyOut
from postwise.contacts.fields import CONTACT_STATUSES, SENIORITIES

# Query filters are typed so a typo is a 422, not an empty page; a test keeps this in
# step with ``contacts.fields.CONTACT_STATUSES``.
ContactStatus = Literal["subscribed", "unsubscribed", "bounced", "complained", "pending"]


class ContactFields(StrictModel):
    external_id: str | None = Field(default=None, description="Your system's id; unique.")
    first_name: str | None = None
    last_name: str | None = None
    job_title: str | None = None
    seniority: str | None = Field(default=None, description=f"One of: {', '.join(SENIORITIES)}.")
    department: str | None = None
    country: str | None = Field(default=None, description="ISO 3166-1 alpha-2 code.")
    timezone: str | None = Field(default=None, description="IANA name, e.g. Europe/Berlin.")
    language: str | None = Field(default=None, description="BCP 47 tag, e.g. en or de-CH.")
    phone: str | None = None
    status: str | None = Field(
        default=None,
        description=f"One of: {', '.join(CONTACT_STATUSES)}. Unsubscribed, bounced and "
        "complained are kept against later updates.",
    )
    attributes: dict[str, Any] | None = Field(
        default=None,
        description="Declared contact attributes (POST /api/attributes), checked against "
        "their type; merged into the stored ones.",
    )


class ContactIn(ContactFields):
    email: str = Field(
        description="The contact's key in the workspace.", examples=["ada@initech.com"]
    )


class ContactPatch(ContactFields):
    email: str | None = None
    unset_attributes: list[str] | None = Field(
        default=None, description="Attribute names to remove from the contact."
    )


class ContactOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    external_id: str | None
    first_name: str | None
    last_name: str | None
    job_title: str | None
    seniority: str | None
    department: str | None
    country: str | None
    timezone: str | None
    language: str | None
    phone: str | None
    status: str
    company_id: int | None
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ContactPage(PageOut[ContactOut]):
    pass


class ConsentOut(BaseModel):
    source: str
    ip: str | None
    text: str | None
    recorded_at: datetime
    confirmed_at: datetime | None


class ContactListOut(BaseModel):
    list_id: int
    list: str
    status: str
    subscribed_at: datetime
    updated_at: datetime
    consent: ConsentOut | None


class EventOut(BaseModel):
    id: int
    type: str
    name: str
    actor: Literal["human", "machine"] | None = Field(
        description="Who caused it, when the event is labelled (email opens and clicks)."
    )
    actor_reason: str | None = Field(description="Why, e.g. apple_mpp or security_scanner.")
    properties: dict[str, Any]
    context: dict[str, Any]
    anonymous_id: str | None
    message_id: str | None
    occurred_at: datetime
    received_at: datetime


class ContactDetail(ContactOut):
    company: CompanyOut | None
    lists: list[ContactListOut]
    latest_events: list[EventOut]


class ChangeEntry(BaseModel):
    at: datetime
    kind: Literal["change"]
    change: str = Field(description="created, updated, status, subscribed, unsubscribed, ...")
    source: str
    details: dict[str, Any]


class EventEntry(BaseModel):
    at: datetime
    kind: Literal["event"]
    type: str
    name: str
    actor: Literal["human", "machine"] | None = Field(
        description="Who caused it, when the event is labelled (email opens and clicks)."
    )
    actor_reason: str | None = Field(description="Why, e.g. apple_mpp or security_scanner.")
    properties: dict[str, Any]


class Timeline(BaseModel):
    data: list[Annotated[ChangeEntry | EventEntry, Field(discriminator="kind")]]


class BulkUpsertIn(StrictModel):
    contacts: list[dict[str, Any]] = Field(
        min_length=1,
        description="Contacts as in PUT /api/contacts. Each row is checked on its own: a bad "
        "row is reported and skipped, the others are stored. At most the server's "
        "bulk_upsert_max rows (5,000 by default).",
    )
    list_: (
        Annotated[int, Field(ge=1, le=MAX_ID)]
        | Annotated[str, Field(min_length=1, max_length=200)]
        | None
    ) = Field(
        default=None,
        alias="list",
        description="Subscribe every stored row to this list (id, or name: created if "
        "missing), with consent source 'api'.",
    )


BulkStatus = Literal["created", "updated", "unchanged", "rejected"]


class BulkRowOut(BaseModel):
    index: int = Field(description="Position of the row in the request.")
    status: BulkStatus
    id: int | None = Field(description="The contact's id; null when rejected.")
    errors: list[FieldErrorOut]


class BulkCounts(BaseModel):
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0


class BulkUpsertOut(BaseModel):
    results: list[BulkRowOut]
    counts: BulkCounts
    list_id: int | None = Field(description="The list rows were subscribed to, if any.")
