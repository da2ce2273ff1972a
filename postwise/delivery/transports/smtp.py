"""SMTP out through aiosmtplib: the relay (smarthost) transport and the session both
it and direct-to-MX delivery use.

aiosmtplib is imported inside the functions that open connections, never at module
import, so domain code that merely names this transport stays free of the SMTP client
(tests/test_architecture.py). Connections are pooled per server and reused across
messages; one that went stale between messages is replaced once, transparently.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from postwise.delivery.transports.base import (
    DeliveryResult,
    Envelope,
    Outcome,
    Phase,
    RecipientResult,
    classify,
    same_for_all,
)

if TYPE_CHECKING:
    from aiosmtplib import SMTP

TlsMode = Literal["none", "starttls", "opportunistic", "implicit"]


@dataclass(frozen=True)
class Server:
    host: str
    port: int = 25
    tls: TlsMode = "opportunistic"
    username: str | None = None
    password: str | None = None
    validate_certs: bool = True
    timeout: float = 60.0
    local_hostname: str | None = None
    tls_context: ssl.SSLContext | None = None


class _Stale(Exception):
    """A pooled connection failed before the server said anything about this message."""


async def open_connection(server: Server) -> SMTP:
    """Connect, do TLS as the mode asks, authenticate; raises aiosmtplib errors."""
    import aiosmtplib

    start_tls: bool | None
    start_tls = {"none": False, "starttls": True, "opportunistic": None, "implicit": False}[
        server.tls
    ]
    client = aiosmtplib.SMTP(
        hostname=server.host,
        port=server.port,
        use_tls=server.tls == "implicit",
        start_tls=start_tls,
        validate_certs=server.validate_certs,
        timeout=server.timeout,
        local_hostname=server.local_hostname,
        tls_context=server.tls_context,
        username=server.username,
        password=server.password,
    )
    await client.connect()
    return client


async def send_data(client: SMTP, payload: bytes) -> Any:
    """DATA with a payload already dot-stuffed and ending in ``.CRLF`` (``wire_payload``).

    aiosmtplib's ``data()`` runs two regular expressions over every message (line-ending
    normalisation, dot-stuffing: ~250 us for 20 KB); ``wire_payload`` does both with
    ``bytes.replace`` once per message, and this sends it through aiosmtplib's own
    command and reply primitives (``execute_command``, ``protocol.write``,
    ``protocol.read_response``), so TLS, timeouts and disconnects behave as before.
    Raises ``SMTPDataError`` for a refusal, like ``data()``.
    """
    import aiosmtplib

    start = await client.execute_command(b"DATA")
    if start.code != 354:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    protocol = client.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    try:
        protocol.write(payload)
        response = await protocol.read_response(timeout=client.timeout)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        client.close()
        raise
    if response.code != 250:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    return response


def _text(exc: Any) -> str:
    return " ".join(str(getattr(exc, "message", exc)).split())


async def transact(client: SMTP, envelope: Envelope, transport: str, host: str) -> DeliveryResult:
    """One MAIL/RCPT/DATA transaction on an open connection.

    Raises ``_Stale`` when the connection died before MAIL was answered (the caller may
    retry on a fresh one: nothing was said about this message yet). Any other loss of
    the connection defers the recipients still open: a drop after DATA's end but before
    the reply is the duplicate window every SMTP client has.
    """
    import aiosmtplib

    results: dict[str, RecipientResult] = {}
    try:
        try:
            await client.mail(envelope.mail_from)
        except aiosmtplib.SMTPSenderRefused as exc:
            bad = RecipientResult(classify(exc.code), exc.code, _text(exc), Phase.MAIL)
            await _reset(client)
            return same_for_all(envelope, transport, bad, host)
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
            raise _Stale(str(exc)) from exc
        for rcpt in envelope.rcpt:
            try:
                response = await client.rcpt(rcpt)
            except aiosmtplib.SMTPRecipientRefused as exc:
                results[rcpt] = RecipientResult(
                    classify(exc.code), exc.code, _text(exc), Phase.RCPT
                )
            else:
                results[rcpt] = RecipientResult(
                    Outcome.ACCEPTED, response.code, _text(response), Phase.RCPT
                )
        open_rcpts = [r for r, res in results.items() if res.outcome is Outcome.ACCEPTED]
        if not open_rcpts:
            await _reset(client)
            return DeliveryResult(transport, results, host)
        try:
            response = await send_data(client, envelope.wire)
        except aiosmtplib.SMTPDataError as exc:
            answer = RecipientResult(classify(exc.code), exc.code, _text(exc), Phase.DATA)
            await _reset(client)
        else:
            answer = RecipientResult(Outcome.ACCEPTED, response.code, _text(response), Phase.DATA)
        for rcpt in open_rcpts:
            results[rcpt] = answer
        return DeliveryResult(transport, results, host)
    except _Stale:
        raise
    except (TimeoutError, aiosmtplib.SMTPException, ConnectionError, OSError) as exc:
        client.close()
        lost = RecipientResult(
            Outcome.DEFERRED, None, f"connection to {host} lost: {_text(exc)}", Phase.DATA
        )
        for rcpt in envelope.rcpt:
            if rcpt not in results or results[rcpt].outcome is Outcome.ACCEPTED:
                results[rcpt] = lost
        return DeliveryResult(transport, results, host)


async def _reset(client: SMTP) -> None:
    try:
        await client.rset()
    except Exception:
        client.close()


class SmtpRelay:
    """Everything to one smarthost, over up to ``pool_size`` reused connections."""

    name = "relay"

    def __init__(self, server: Server, *, pool_size: int = 4) -> None:
        self.server = server
        self._idle: list[SMTP] = []
        self._slots = asyncio.Semaphore(pool_size)

    async def _connection(self) -> tuple[SMTP, bool]:
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client, True
        return await open_connection(self.server), False

    async def deliver(self, envelope: Envelope) -> DeliveryResult:
        import aiosmtplib

        host = f"{self.server.host}:{self.server.port}"
        async with self._slots:
            for _ in range(2):
                try:
                    client, reused = await self._connection()
                except aiosmtplib.SMTPResponseException as exc:  # refused at greeting/AUTH
                    result = RecipientResult(
                        classify(exc.code), exc.code, _text(exc), Phase.CONNECT
                    )
                    return same_for_all(envelope, self.name, result, host)
                except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
                    result = RecipientResult(
                        Outcome.DEFERRED,
                        None,
                        f"cannot connect to {host}: {_text(exc)}",
                        Phase.CONNECT,
                    )
                    return same_for_all(envelope, self.name, result, host)
                try:
                    outcome = await transact(client, envelope, self.name, host)
                except _Stale as exc:
                    client.close()
                    if reused:
                        continue
                    result = RecipientResult(
                        Outcome.DEFERRED,
                        None,
                        f"{host} closed the connection: {exc}",
                        Phase.MAIL,
                    )
                    return same_for_all(envelope, self.name, result, host)
                if client.is_connected:
                    self._idle.append(client)
                return outcome
            raise AssertionError("unreachable: a fresh connection never raises _Stale twice")

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            try:
                await client.quit()
            except Exception:
                client.close()
