"""Creating workspaces and keys, and resolving a presented key to who it acts for.

Keys are random 32-byte secrets; only their SHA-256 is stored (a slow hash buys nothing
for high-entropy secrets and would cost every request). The plain key is returned once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from postwise.core.clock import utcnow
from postwise.core.errors import AuthenticationFailed, NotFound, ValidationFailed
from postwise.storage.tables import ApiKey, Workspace
from postwise.workspaces.scopes import Scope, parse_scopes

SECRET_PREFIX = "pw_sk_"
WRITE_PREFIX = "pw_wk_"


@dataclass(frozen=True)
class Principal:
    workspace_id: int
    key_id: int
    kind: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class IssuedKey:
    id: int
    workspace_id: int
    key: str
    scopes: list[str]


@dataclass(frozen=True)
class NewWorkspace:
    workspace_id: int
    name: str
    api_key: str
    write_key: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _issue(
    session: Session, workspace_id: int, kind: str, scopes: list[Scope], name: str
) -> IssuedKey:
    prefix = SECRET_PREFIX if kind == "secret" else WRITE_PREFIX
    key = prefix + secrets.token_urlsafe(32)
    row = ApiKey(
        workspace_id=workspace_id,
        kind=kind,
        name=name,
        prefix=key[: len(prefix) + 6],
        key_hash=hash_key(key),
        scopes=[s.value for s in scopes],
    )
    session.add(row)
    session.flush()
    return IssuedKey(row.id, workspace_id, key, list(row.scopes))


def create_workspace(session: Session, name: str) -> NewWorkspace:
    """A workspace with one admin key and one tracking write key (session must be system)."""
    name = name.strip()
    if not name:
        raise ValidationFailed("workspace name must not be empty", field="name")
    workspace = Workspace(name=name)
    session.add(workspace)
    session.flush()
    admin = _issue(session, workspace.id, "secret", [Scope.ADMIN], "initial admin key")
    write = _issue(session, workspace.id, "write", [Scope.TRACK], "tracking write key")
    return NewWorkspace(workspace.id, workspace.name, admin.key, write.key)


def create_api_key(
    session: Session, workspace_id: int, scopes: list[str], name: str = "", kind: str = "secret"
) -> IssuedKey:
    if session.get(Workspace, workspace_id) is None:
        raise NotFound(f"workspace {workspace_id} does not exist", field="workspace_id")
    if kind not in ("secret", "write"):
        raise ValidationFailed("kind must be 'secret' or 'write'", field="kind")
    if not scopes:
        raise ValidationFailed("give at least one scope", field="scopes")
    return _issue(session, workspace_id, kind, parse_scopes(scopes), name)


def revoke_api_key(session: Session, key_id: int) -> None:
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    if result.rowcount == 0 and session.get(ApiKey, key_id) is None:  # type: ignore[attr-defined]
        raise NotFound(f"API key {key_id} does not exist", field="key_id")


def list_api_keys(session: Session, workspace_id: int) -> list[ApiKey]:
    return list(
        session.scalars(
            select(ApiKey).where(ApiKey.workspace_id == workspace_id).order_by(ApiKey.id)
        )
    )


def authenticate(session: Session, key: str, *, kind: str | None = None) -> Principal:
    """Resolve a presented key; the same error for unknown and revoked keys leaks nothing."""
    if not key:
        raise AuthenticationFailed("no API key given: send it as 'Authorization: Bearer KEY'")
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    if row is None or row.revoked_at is not None:
        raise AuthenticationFailed("the API key is unknown or revoked", code="invalid_api_key")
    if kind is not None and row.kind != kind:
        raise AuthenticationFailed(
            f"a {row.kind} key cannot be used here; use a {kind} key", code="wrong_key_kind"
        )
    return Principal(row.workspace_id, row.id, row.kind, frozenset(row.scopes))
