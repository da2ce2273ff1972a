"""Compact signed tokens naming a message (and a link, a contact...) in URLs and addresses.

A token is ``hex(kind || varints || mac)``: lower case, so it survives mail systems
that fold the case of a VERP local part, and encoded in C (base32 is pure Python).
``kind`` separates purposes: a click token cannot be replayed as an unsubscribe token.
The MAC is 80 bits of HMAC-SHA256 under a key derived from ``POSTWISE_SECRET_KEY``; any
change to a token, including a truncation, makes ``verify`` return ``None``.
See docs/messages.md.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import IntEnum

_MAC_BYTES = 10
_MAX_VALUES = 8


class TokenKind(IntEnum):
    CLICK = 1  # (message id, link index)
    OPEN = 2  # (message id,)
    UNSUBSCRIBE = 3  # (workspace id, contact id, list id or 0, message id)
    BOUNCE = 4  # (message id,) in the VERP return path
    WEBHOOK = 5  # (workspace id,) in a mail provider's bounce webhook URL


def _varints(values: tuple[int, ...]) -> bytes:
    out = bytearray()
    for value in values:
        if value < 0:
            raise ValueError("token values must be non-negative")
        while True:
            byte = value & 0x7F
            value >>= 7
            if value:
                out.append(byte | 0x80)
            else:
                out.append(byte)
                break
    return bytes(out)


def _parse_varints(data: bytes) -> tuple[int, ...] | None:
    values: list[int] = []
    value = shift = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        shift += 7
        if shift > 70:
            return None
        if not byte & 0x80:
            values.append(value)
            value = shift = 0
    if shift:
        return None
    return tuple(values)


class TokenSigner:
    """Signs and verifies tokens under one secret; create once and share."""

    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, b"postwise/tracking-tokens", hashlib.sha256).digest()

    def _mac(self, payload: bytes) -> bytes:
        return hmac.digest(self._key, payload, "sha256")[:_MAC_BYTES]

    def sign(self, kind: TokenKind, *values: int) -> str:
        if not 0 < len(values) <= _MAX_VALUES:
            raise ValueError(f"a token carries 1 to {_MAX_VALUES} values")
        payload = bytes([kind]) + _varints(values)
        raw = payload + self._mac(payload)
        return raw.hex()

    def verify(self, kind: TokenKind, token: str) -> tuple[int, ...] | None:
        """The values, or ``None`` for anything not signed by us for this kind."""
        if not token or len(token) > 200 or not token.isascii():
            return None
        text = token.lower()
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            return None
        if len(raw) < _MAC_BYTES + 2:
            return None
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        if payload[0] != kind:
            return None
        if raw.hex() != text:  # whitespace that fromhex skips
            return None
        return _parse_varints(payload[1:])
