"""The caller's own workspace and its API keys (admin scope)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from postwise.api.dependencies import require, scoped_session
from postwise.storage.tables import Workspace
from postwise.storage.tenancy import workspace_of
from postwise.workspaces import actions
from postwise.workspaces.actions import Principal
from postwise.workspaces.scopes import Scope

router = APIRouter(prefix="/api", tags=["workspace"])
AdminSession = Annotated[Session, Depends(scoped_session(Scope.ADMIN))]


class WorkspaceOut(BaseModel):
    id: int
    name: str
    created_at: datetime


class ApiKeyOut(BaseModel):
    id: int
    kind: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scopes: list[str] = Field(min_length=1, examples=[["contacts:read"]])
    name: str = Field(default="", max_length=200)
    kind: str = Field(default="secret", pattern="^(secret|write)$")


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself, shown this once; only its hash is stored.")


class PrincipalOut(BaseModel):
    workspace_id: int
    key_id: int
    scopes: list[str]


@router.get("/workspace", response_model=WorkspaceOut)
def get_workspace(session: AdminSession) -> Workspace:
    workspace = session.get(Workspace, workspace_of(session))
    assert workspace is not None  # the key authenticated against it a moment ago
    return workspace


@router.get("/whoami", response_model=PrincipalOut)
def whoami(principal: Annotated[Principal, Depends(require(Scope.CONTACTS_READ))]) -> PrincipalOut:
    """Which workspace and scopes the presented key carries; handy when wiring a client."""
    return PrincipalOut(
        workspace_id=principal.workspace_id,
        key_id=principal.key_id,
        scopes=sorted(principal.scopes),
    )


@router.get("/api-keys", response_model=list[ApiKeyOut])
def list_keys(session: AdminSession) -> list[ApiKeyOut]:
    keys = actions.list_api_keys(session, workspace_of(session))
    return [ApiKeyOut.model_validate(k, from_attributes=True) for k in keys]


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED)
def create_key(body: ApiKeyCreate, session: AdminSession) -> ApiKeyCreated:
    issued = actions.create_api_key(
        session, workspace_of(session), body.scopes, name=body.name, kind=body.kind
    )
    row = next(
        k for k in actions.list_api_keys(session, workspace_of(session)) if k.id == issued.id
    )
    return ApiKeyCreated(
        **ApiKeyOut.model_validate(row, from_attributes=True).model_dump(), key=issued.key
    )


@router.delete("/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_key(key_id: int, session: AdminSession) -> None:
    """Revokes at once; the tenant session makes another workspace's key id a 404."""
    actions.revoke_api_key(session, key_id)
