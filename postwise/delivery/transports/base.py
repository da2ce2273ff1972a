"""The seam between the outbox and the network: ``MailTransport.deliver(envelope)``.

A transport answers per recipient: accepted (2xx), deferred (4xx, or no answer at all:
refused connection, dropped connection, timeout) or rejected (5xx at RCPT or DATA).
It never raises for what a server said; library exceptions are translated here, at the
seam, so the outbox only ever sees ``DeliveryResult``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DEFERRED = "deferred"
    REJECTED = "rejected"


class Phase(StrEnum):
    """Where in the SMTP dialogue the answer came."""

    CONNECT = "connect"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    LOCAL = "local"  # a transport that writes locally (capture, memory)


def wire_payload(data: bytes) -> bytes:
    """The DATA payload as SMTP puts it on the wire: every line ending CRLF, lines that
    start with '.' doubled (RFC 5321 4.5.2), the final CRLF and the terminating '.CRLF'.

    Built messages already end every line in CRLF; ``bytes.count`` proves it at C speed
    and only other input (a prebuilt message with bare LF or CR) is normalised.
    """
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        data = _LINE_ENDINGS.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    data = data.replace(b"\r\n.", b"\r\n..")
    if data.startswith(b"."):
        data = b"." + data
    return data + b".\r\n"


_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r")


@dataclass(frozen=True)
class Envelope:
    mail_from: str
    rcpt: tuple[str, ...]
    data: bytes  # the message, CRLF line endings, not dot-stuffed
    message_id: str | None = None
    workspace_id: int | None = None
    outbox_id: int | None = None
    # The DATA payload (``wire_payload(data)``), when the caller made it already.
    prepared_wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        return self.prepared_wire if self.prepared_wire is not None else wire_payload(self.data)


@dataclass(frozen=True)
class RecipientResult:
    outcome: Outcome
    code: int | None  # None: no SMTP answer (connection refused, dropped, timed out)
    reply: str
    phase: Phase

    @property
    def enhanced_code(self) -> str | None:
        match = _ENHANCED.match(self.reply)
        return match.group(1) if match else None

    @property
    def full_reply(self) -> str:
        return f"{self.code} {self.reply}" if self.code is not None else self.reply


@dataclass(frozen=True)
class DeliveryResult:
    transport: str
    recipients: dict[str, RecipientResult] = field(default_factory=dict)
    host: str | None = None  # the server that answered, when there was one

    def of(self, rcpt: str) -> RecipientResult:
        return self.recipients[rcpt]


def classify(code: int | None) -> Outcome:
    if code is None or 400 <= code < 500:
        return Outcome.DEFERRED
    if 200 <= code < 400:
        return Outcome.ACCEPTED
    return Outcome.REJECTED


def same_for_all(
    envelope: Envelope, transport: str, result: RecipientResult, host: str | None = None
) -> DeliveryResult:
    return DeliveryResult(transport, dict.fromkeys(envelope.rcpt, result), host)


class MailTransport(Protocol):
    """Hands messages to the next hop. Implementations may keep connections open."""

    name: str

    async def deliver(self, envelope: Envelope) -> DeliveryResult: ...

    async def close(self) -> None: ...
