"""DKIM keys at rest: generated here, stored encrypted, loaded once per worker.

The private key PEM is encrypted with AES-256-GCM under a key derived from
``POSTWISE_SECRET_KEY`` (HMAC-SHA256 with a fixed label); the workspace, domain and
selector are the associated data, so a ciphertext copied to another row does not
decrypt. A database dump alone therefore cannot sign mail as the customer's domain.
Rotating the secret makes stored keys unreadable: generate new ones (new selector).
The secret is passed in by the edges (CLI, worker), never read from settings here.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.orm import Session

from postwise.core.errors import Conflict, FieldError, ValidationFailed
from postwise.messages import dkim, encoding
from postwise.messages.pipeline import DkimKey
from postwise.storage.tables import DkimKeyRecord
from postwise.storage.tenancy import workspace_of

_SELECTOR = re.compile(
    r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)


def _aead(secret: bytes) -> AESGCM:
    return AESGCM(hmac.new(secret, b"postwise/dkim-keys", hashlib.sha256).digest())


def _associated(workspace_id: int, domain: str, selector: str) -> bytes:
    return f"{workspace_id}\x00{domain}\x00{selector}".encode()


def _clean_domain(domain: str) -> str:
    ascii_domain = encoding._ascii_domain(domain.strip().rstrip("."))
    if ascii_domain is None or "." not in ascii_domain:
        raise ValidationFailed(
            f"{domain!r} is not a domain name.", code="invalid_domain", field="domain"
        )
    return ascii_domain


def generate_dkim_key(
    session: Session, secret: bytes, *, domain: str, selector: str, algorithm: str = "rsa"
) -> tuple[DkimKeyRecord, list[str]]:
    """Create and store a key; returns the row and the TXT record's character-strings."""
    errors: list[FieldError] = []
    selector = selector.strip().lower()
    if not _SELECTOR.fullmatch(selector):
        errors.append(FieldError("selector", "invalid_selector", "Letters, digits, '-' and '.'."))
    if algorithm not in dkim.ALGORITHMS:
        errors.append(FieldError("algorithm", "invalid_algorithm", "Choose rsa or ed25519."))
    if errors:
        raise ValidationFailed.from_errors(errors)
    domain = _clean_domain(domain)
    exists = session.scalar(
        select(DkimKeyRecord.id).where(
            DkimKeyRecord.domain == domain, DkimKeyRecord.selector == selector
        )
    )
    if exists is not None:
        raise Conflict(
            f"{selector}._domainkey.{domain} already has a key; choose a new selector to rotate.",
            code="dkim_key_exists",
            field="selector",
        )
    pem = dkim.generate_private_key(algorithm)
    key = dkim.load_key(pem, domain=domain, selector=selector)
    workspace_id = workspace_of(session)
    nonce = os.urandom(12)
    sealed = nonce + _aead(secret).encrypt(nonce, pem, _associated(workspace_id, domain, selector))
    record = dkim.dns_record(key)
    row = DkimKeyRecord(
        domain=domain,
        selector=selector,
        algorithm=dkim.ALGORITHMS[algorithm],
        private_key=sealed,
        dns_record=record,
        active=True,
    )
    session.add(row)
    session.flush()
    return row, dkim.txt_strings(record)


def list_dkim_keys(session: Session) -> list[DkimKeyRecord]:
    return list(
        session.scalars(select(DkimKeyRecord).order_by(DkimKeyRecord.domain, DkimKeyRecord.id))
    )


def signing_keys(session: Session, secret: bytes, domain: str) -> tuple[DkimKey, ...]:
    """The active keys of a sending domain, decrypted and loaded (do this once per worker)."""
    domain = _clean_domain(domain)
    rows = session.scalars(
        select(DkimKeyRecord)
        .where(DkimKeyRecord.domain == domain, DkimKeyRecord.active.is_(True))
        .order_by(DkimKeyRecord.id)
    )
    keys = []
    aead = _aead(secret)
    for row in rows:
        nonce, sealed = row.private_key[:12], row.private_key[12:]
        try:
            pem = aead.decrypt(
                nonce, sealed, _associated(row.workspace_id, row.domain, row.selector)
            )
        except InvalidTag:
            raise ValidationFailed(
                f"The DKIM key {row.selector}._domainkey.{row.domain} cannot be decrypted: "
                "POSTWISE_SECRET_KEY changed since it was made. Generate a new key.",
                code="dkim_key_unreadable",
            ) from None
        keys.append(dkim.load_key(pem, domain=row.domain, selector=row.selector))
    return tuple(keys)
