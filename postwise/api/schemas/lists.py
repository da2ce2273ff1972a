"""Lists and memberships (subscriptions with their consent)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyAddress, model_validator

from postwise.api.schemas import MAX_ID, PageOut, StrictModel
from postwise.contacts.lists import CONSENT_SOURCES

MembershipStatus = Literal["subscribed", "unsubscribed", "pending"]


class ListIn(StrictModel):
    name: str = Field(examples=["Newsletter"], description="1 to 200 characters, unique.")
    description: str | None = Field(default=None, max_length=1000)
    double_opt_in: bool = Field(
        default=False, description="New subscribers stay pending until they confirm."
    )


class ListPatch(StrictModel):
    name: str | None = None
    description: str | None = Field(default=None, max_length=1000)
    double_opt_in: bool | None = None


class ListOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    double_opt_in: bool
    created_at: datetime


class MembershipCounts(BaseModel):
    subscribed: int
    unsubscribed: int
    pending: int


class ListDetail(ListOut):
    counts: MembershipCounts


class ListPage(PageOut[ListOut]):
    pass


class SubscribeIn(StrictModel):
    """The consent behind a subscription: kept for as long as the person is on file."""

    source: str = Field(default="api", description=f"One of: {', '.join(CONSENT_SOURCES)}.")
    ip: IPvAnyAddress | None = Field(
        default=None, description="Where the person agreed from, if known."
    )
    consent_text: str | None = Field(
        default=None, max_length=10_000, description="The wording they agreed to."
    )
    confirmed: bool = Field(
        default=False,
        description="Consent was already confirmed elsewhere; on a double-opt-in list "
        "anything else waits as pending.",
    )


class AddMemberIn(SubscribeIn):
    contact_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    email: str | None = Field(default=None, description="An existing contact's email.")

    @model_validator(mode="after")
    def _one_contact(self) -> AddMemberIn:
        if (self.contact_id is None) == (self.email is None):
            raise ValueError("name the contact by exactly one of contact_id or email")
        return self


class MembershipOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    list_id: int
    contact_id: int
    status: MembershipStatus
    consent_id: int | None
    created_at: datetime
    updated_at: datetime


class MembershipPage(PageOut[MembershipOut]):
    pass
