"""The keyed hash that stands in for an erased address.

HMAC-SHA256 under a key derived for this one purpose from the installation secret
(``POSTWISE_SECRET_KEY``): without the key a hash cannot be tested against a list of
guessed addresses, and the secret itself is never used directly, so a leak of one
derived key says nothing about signed tokens. The key is passed in, never read from
settings here, so the domain stays free of global state and tests can use their own.

Rotating ``POSTWISE_SECRET_KEY`` makes every stored hash unmatchable: erased people
would become mailable again. Keep the secret for the life of the installation.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from postwise.contacts.emails import normalize_email

ERASURE_PURPOSE = b"postwise/erasure"


def suppression_form(email: str) -> str:
    """The address as suppression compares it: normalized, then lower-cased whole.

    Contacts keep the local part's case (RFC 5321 allows it to matter), but virtually
    every mailbox ignores it; for not mailing someone, the safe reading is the loose one.
    """
    return normalize_email(email).address.lower()


@dataclass(frozen=True)
class AddressHasher:
    key: bytes = field(repr=False)

    @classmethod
    def from_secret(cls, secret: bytes, purpose: bytes = ERASURE_PURPOSE) -> AddressHasher:
        """Derive the per-purpose key: HMAC(secret, purpose)."""
        if not secret:
            raise ValueError("the secret key must not be empty")
        return cls(hmac.new(secret, purpose, hashlib.sha256).digest())

    def hash(self, email: str) -> str:
        """64 hex characters; raises ValidationFailed for a malformed address."""
        return self.hash_normalized(suppression_form(email))

    def hash_normalized(self, address: str) -> str:
        """For an address already in ``suppression_form``."""
        return hmac.new(self.key, address.encode(), hashlib.sha256).hexdigest()
