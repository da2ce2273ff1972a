from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from postwise.messages import dkim
from postwise.messages.pipeline import (
    DkimKey,
    MessageBuilder,
    Recipient,
    Sender,
)
from postwise.tracking.tokens import TokenSigner

FIXED_NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="session")
def rsa_key() -> DkimKey:
    return dkim.load_key(dkim.generate_private_key("rsa"), domain="acme.example", selector="rsa1")


@pytest.fixture(scope="session")
def ed_key() -> DkimKey:
    return dkim.load_key(
        dkim.generate_private_key("ed25519"), domain="acme.example", selector="ed1"
    )


@pytest.fixture(scope="session")
def dnsfunc(rsa_key: DkimKey, ed_key: DkimKey) -> Callable[..., bytes | None]:
    """A DNS stub holding the published TXT records, as dkimpy asks for them."""
    records = {
        f"{key.selector}._domainkey.{key.domain}.".encode(): "".join(
            dkim.txt_strings(dkim.dns_record(key))
        ).encode()
        for key in (rsa_key, ed_key)
    }

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return lookup


@pytest.fixture
def tokens() -> TokenSigner:
    return TokenSigner(b"test-secret")


@pytest.fixture
def builder(tokens: TokenSigner) -> MessageBuilder:
    return MessageBuilder(tokens, clock=lambda: FIXED_NOW)


def make_sender(*keys: DkimKey, **overrides: object) -> Sender:
    values: dict[str, object] = {
        "from_address": "news@acme.example",
        "from_name": "Acme News",
        "sending_domain": "acme.example",
        "bounce_domain": "bounce.acme.example",
        "base_url": "https://t.acme.example",
        "postal_address": "Acme Ltd, 1 Main Street, Springfield",
        "dkim": keys,
    }
    values.update(overrides)
    return Sender(**values)  # type: ignore[arg-type]


def make_recipient(**overrides: object) -> Recipient:
    values: dict[str, object] = {
        "email": "ann@corp.example",
        "contact_id": 7,
        "name": "Ann Lee",
        "fields": {"first_name": "Ann", "last_name": "Lee"},
        "tracking_consent": True,
    }
    values.update(overrides)
    return Recipient(**values)  # type: ignore[arg-type]
