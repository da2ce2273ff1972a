"""Suppression list, GDPR export and erasure: everything under the ``privacy`` scope.

``/api/suppressions`` manages the list every sender consults; ``/api/contacts/{id}/export``
and ``/erase`` answer a person's requests by contact, ``/api/privacy/erase`` by address
(people ask by address, and may not be a contact). The keyed hash uses the installation
secret (``POSTWISE_SECRET_KEY``), so erased addresses match across restarts.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from postwise.api.dependencies import get_db, get_settings, require, tenant_session
from postwise.contacts.lists import ConsentInput
from postwise.core.pagination import MAX_LIMIT
from postwise.core.settings import Settings
from postwise.privacy import erasure, export, suppression
from postwise.privacy.hashing import AddressHasher
from postwise.storage.database import Database
from postwise.storage.tables import Erasure, Suppression
from postwise.workspaces.actions import Principal
from postwise.workspaces.scopes import Scope

router = APIRouter(tags=["privacy"])

MAX_ID = 2**63 - 1
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
_principal = require(Scope.PRIVACY)
Caller = Annotated[Principal, Depends(_principal)]


def _session(caller: Caller, db: Annotated[Database, Depends(get_db)]) -> Iterator[Session]:
    yield from tenant_session(caller, db)


def _hasher(settings: Annotated[Settings, Depends(get_settings)]) -> AddressHasher:
    return AddressHasher.from_secret(settings.resolved_secret_key())


# scope="function": the transaction commits before the response is sent.
Tenant = Annotated[Session, Depends(_session, scope="function")]
Hasher = Annotated[AddressHasher, Depends(_hasher)]


def _requested_by(caller: Principal) -> str:
    return f"api_key:{caller.key_id}"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SuppressionIn(Strict):
    email: str | None = Field(None, max_length=320, description="One address.")
    domain: str | None = Field(None, max_length=255, description="A domain and its subdomains.")
    reason: suppression.Reason = "manual"
    note: str = Field("", max_length=500)


class SuppressionOut(BaseModel):
    id: int
    kind: suppression.Kind
    value: str = Field(description="Address or domain; for address_hash, the hex hash.")
    reason: str
    note: str
    created_at: datetime

    @classmethod
    def of(cls, row: Suppression) -> SuppressionOut:
        return cls(
            id=row.id,
            kind=row.kind,
            value=row.value,
            reason=row.reason,
            note=row.note,
            created_at=row.created_at,
        )


class SuppressionPage(BaseModel):
    data: list[SuppressionOut]
    next_cursor: str | None


class CheckOut(BaseModel):
    email: str
    suppressed: bool
    kind: str | None = None
    reason: str | None = None
    suppression_id: int | None = None


class ReceiptOut(BaseModel):
    erasure_id: int
    contact_ids: list[int]
    erased_at: datetime
    requested_by: str
    deleted: dict[str, int] = Field(description="Rows deleted, per table.")
    redacted: dict[str, int] = Field(description="Other people's rows the address was cut from.")
    suppression_ids: list[int] = Field(description="The address_hash entries now in force.")

    @classmethod
    def of(cls, receipt: erasure.ErasureReceipt) -> ReceiptOut:
        return cls.model_validate(receipt.as_dict())


class EraseByEmailIn(Strict):
    email: str = Field(max_length=320)


class ReadmitIn(Strict):
    source: Literal["api", "form", "admin"]
    text: str = Field(min_length=1, max_length=10000, description="What the person agreed to.")
    ip: str | None = Field(None, max_length=64)


class LiftedOut(BaseModel):
    kind: str
    reason: str
    created_at: datetime


class ReadmitOut(BaseModel):
    lifted: list[LiftedOut]


class ErasureOut(BaseModel):
    id: int
    former_contact_ids: list[int]
    requested_by: str
    erased_at: datetime
    deleted: dict[str, int]
    redacted: dict[str, int]

    @classmethod
    def of(cls, row: Erasure) -> ErasureOut:
        return cls(
            id=row.id,
            former_contact_ids=list(row.former_contact_ids),
            requested_by=row.requested_by,
            erased_at=row.erased_at,
            deleted=dict(row.deleted),
            redacted=dict(row.redacted),
        )


@router.get("/api/suppressions", response_model=SuppressionPage, summary="List suppressions")
def list_suppressions(
    session: Tenant,
    kind: suppression.Kind | None = None,
    reason: suppression.AnyReason | None = None,
    q: Annotated[str | None, Query(max_length=320, description="Part of the value.")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> SuppressionPage:
    page = suppression.list_suppressions(
        session, kind=kind, reason=reason, q=q, cursor=cursor, limit=limit
    )
    return SuppressionPage(
        data=[SuppressionOut.of(r) for r in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "/api/suppressions",
    response_model=SuppressionOut,
    status_code=status.HTTP_201_CREATED,
    summary="Suppress an address or a whole domain (an existing entry is returned as is)",
)
def add_suppression(session: Tenant, hasher: Hasher, body: SuppressionIn) -> SuppressionOut:
    row = suppression.add_suppression(
        session,
        hasher=hasher,
        email=body.email,
        domain=body.domain,
        reason=body.reason,
        note=body.note,
    )
    return SuppressionOut.of(row)


@router.get(
    "/api/suppressions/check",
    response_model=CheckOut,
    summary="Whether an address may be mailed, and if not, which entry forbids it",
)
def check(
    session: Tenant, hasher: Hasher, email: Annotated[str, Query(max_length=320)]
) -> CheckOut:
    hit = suppression.is_suppressed(session, email, hasher=hasher)
    if hit is None:
        return CheckOut(email=email, suppressed=False)
    return CheckOut(
        email=email,
        suppressed=True,
        kind=hit.kind,
        reason=hit.reason,
        suppression_id=hit.suppression_id,
    )


@router.delete(
    "/api/suppressions/{suppression_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Lift an address or domain entry (an erasure's hash needs /readmit)",
)
def remove_suppression(session: Tenant, caller: Caller, suppression_id: Id) -> None:
    suppression.remove_suppression(session, suppression_id, actor=_requested_by(caller))


@router.get(
    "/api/contacts/{contact_id}/export",
    summary="GDPR export: everything held about a contact, as one JSON file",
    response_class=JSONResponse,
    responses={200: {"content": {"application/json": {}}}},
)
def export_contact(session: Tenant, hasher: Hasher, contact_id: Id) -> JSONResponse:
    document = export.export_contact(session, contact_id, hasher=hasher)
    return JSONResponse(
        document,
        headers={"Content-Disposition": f'attachment; filename="contact-{contact_id}-export.json"'},
    )


@router.post(
    "/api/contacts/{contact_id}/erase",
    response_model=ReceiptOut,
    summary="GDPR erasure: delete the contact's data everywhere, keep a keyed hash",
)
def erase_contact(session: Tenant, hasher: Hasher, caller: Caller, contact_id: Id) -> ReceiptOut:
    receipt = erasure.erase_contact(
        session, contact_id, hasher=hasher, requested_by=_requested_by(caller)
    )
    return ReceiptOut.of(receipt)


@router.post(
    "/api/privacy/erase",
    response_model=ReceiptOut,
    summary="GDPR erasure by address, whether or not the person is a contact",
)
def erase_by_email(
    session: Tenant, hasher: Hasher, caller: Caller, body: EraseByEmailIn
) -> ReceiptOut:
    receipt = erasure.erase_address(
        session, body.email, hasher=hasher, requested_by=_requested_by(caller)
    )
    return ReceiptOut.of(receipt)


@router.post(
    "/api/contacts/{contact_id}/readmit",
    response_model=ReadmitOut,
    summary="Lift the suppression of a person who consented again, recording that consent",
)
def readmit(
    session: Tenant, hasher: Hasher, caller: Caller, contact_id: Id, body: ReadmitIn
) -> ReadmitOut:
    lifted = suppression.readmit(
        session,
        contact_id,
        ConsentInput(body.source, ip=body.ip, text=body.text),
        hasher=hasher,
        requested_by=_requested_by(caller),
    )
    return ReadmitOut(
        lifted=[LiftedOut(kind=h.kind, reason=h.reason, created_at=h.created_at) for h in lifted]
    )


@router.get(
    "/api/privacy/erasures",
    response_model=list[ErasureOut],
    summary="The newest erasure audit records (they hold no personal data)",
)
def list_erasures(
    session: Tenant, limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50
) -> list[ErasureOut]:
    return [ErasureOut.of(row) for row in erasure.list_erasures(session, limit=limit)]
