"""The relay over STARTTLS and over implicit TLS (port 465 style) with AUTH, against
aiosmtpd with a self-signed certificate; with wrong credentials nothing is sent."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from postwise.delivery.transports.base import Envelope, Outcome, Phase
from postwise.delivery.transports.smtp import Server, SmtpRelay, TlsMode

from .smtp_peer import ScriptedHandler, _AnyPortController


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    folder: Path = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


def authenticator(
    _server: Any, _session: Any, _envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"relay", b"s3cret")
    return AuthResult(success=ok)


@pytest.fixture
def relay_server(tls_context: ssl.SSLContext) -> Iterator[tuple[ScriptedHandler, int]]:
    handler = ScriptedHandler()
    controller = _AnyPortController(
        handler,
        hostname="127.0.0.1",
        port=0,
        tls_context=tls_context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    controller.start()
    try:
        yield handler, int(controller.port)
    finally:
        controller.stop()


def send(port: int, tls: TlsMode, password: str) -> tuple[Outcome, int | None, Phase]:
    relay = SmtpRelay(
        Server(
            "127.0.0.1",
            port,
            tls=tls,
            username="relay",
            password=password,
            validate_certs=False,
            timeout=10,
        )
    )

    async def go() -> tuple[Outcome, int | None, Phase]:
        result = await relay.deliver(
            Envelope("b@send.example", ("ann@corp.example",), b"Subject: hi\r\n\r\nhello\r\n")
        )
        await relay.close()
        answer = result.of("ann@corp.example")
        return answer.outcome, answer.code, answer.phase

    return asyncio.run(go())


def test_starttls_and_auth(relay_server: tuple[ScriptedHandler, int]) -> None:
    handler, port = relay_server
    assert send(port, "starttls", "s3cret") == (Outcome.ACCEPTED, 250, Phase.DATA)
    assert [r.rcpt for r in handler.received] == [["ann@corp.example"]]
    outcome, _, phase = send(port, "starttls", "wrong")
    assert outcome is not Outcome.ACCEPTED and phase is Phase.CONNECT
    assert len(handler.received) == 1  # nothing gets through without the password


@dataclass
class TlsNotingHandler(ScriptedHandler):
    """Notes, per EHLO, whether the connection was encrypted (the TLS object exists)."""

    encrypted: list[bool] = field(default_factory=list)

    async def handle_EHLO(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.encrypted.append(server.transport.get_extra_info("ssl_object") is not None)
        return await super().handle_EHLO(server, session, envelope, hostname, responses)


@pytest.fixture
def implicit_tls_server(tls_context: ssl.SSLContext) -> Iterator[tuple[TlsNotingHandler, int]]:
    """Port 465 style: TLS from the first byte (aiosmtpd wraps the listening socket).

    aiosmtpd counts only STARTTLS as TLS for ``auth_require_tls``, so that check is off
    here; the handler proves each session was encrypted instead.
    """
    handler = TlsNotingHandler()
    controller = _AnyPortController(
        handler,
        hostname="127.0.0.1",
        port=0,
        ssl_context=tls_context,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield handler, int(controller.port)
    finally:
        controller.stop()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_implicit_tls_and_auth(implicit_tls_server: tuple[TlsNotingHandler, int]) -> None:
    handler, port = implicit_tls_server
    assert send(port, "implicit", "s3cret") == (Outcome.ACCEPTED, 250, Phase.DATA)
    assert send(port, "implicit", "s3cret")[0] is Outcome.ACCEPTED
    assert [r.rcpt for r in handler.received] == [["ann@corp.example"]] * 2
    outcome, _, phase = send(port, "implicit", "wrong")
    assert outcome is not Outcome.ACCEPTED and phase is Phase.CONNECT
    # A client speaking plain SMTP to a TLS port gets nowhere, and nothing is sent.
    assert send(port, "none", "s3cret")[0] is not Outcome.ACCEPTED
    assert len(handler.received) == 2
    assert handler.encrypted and all(handler.encrypted)  # every session that got to EHLO
