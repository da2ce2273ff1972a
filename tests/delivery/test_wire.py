"""The DATA payload made once with ``bytes.replace`` (``wire_payload``) equals what
aiosmtplib's own ``data()`` puts on the wire, and arrives intact at a real server."""

from __future__ import annotations

import asyncio

from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given
from hypothesis import strategies as st

from postwise.delivery.transports.base import Envelope, Outcome, wire_payload
from postwise.delivery.transports.smtp import Server, SmtpRelay

from .smtp_peer import ScriptedHandler, smtp_server


def aiosmtplib_wire(data: bytes) -> bytes:
    """What ``aiosmtplib.SMTP.data`` writes after the 354 (protocol.execute_data_command)."""
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data)) + b".\r\n"


@given(st.lists(st.sampled_from([b".", b"..", b"\r", b"\n", b"\r\n", b"a", b" "])).map(b"".join))
def test_same_bytes_as_aiosmtplib_for_any_mix_of_dots_and_line_ends(data: bytes) -> None:
    assert wire_payload(data) == aiosmtplib_wire(data)


def test_built_message_with_dots_and_a_prebuilt_one_with_bare_lf() -> None:
    crlf = b"Subject: x\r\n\r\n.first\r\n.\r\nmiddle\r\n..two\r\nend\r\n"
    assert wire_payload(crlf) == (
        b"Subject: x\r\n\r\n..first\r\n..\r\nmiddle\r\n...two\r\nend\r\n.\r\n"
    )
    assert wire_payload(b".a\nb\rc") == b"..a\r\nb\r\nc\r\n.\r\n"


def test_a_real_server_receives_the_message_unstuffed() -> None:
    handler = ScriptedHandler()
    messages = [
        b"Subject: one\r\n\r\n.leading\r\n.\r\n..\r\nlast line without CRLF",
        b"Subject: two\n\n.bare LF\n.\nend\n",
        b"Subject: three\r\n\r\n" + b"x" * 70 + b"\r\n.\r\n" * 500,
    ]
    with smtp_server(handler) as (host, port):
        relay = SmtpRelay(Server(host, port, tls="none", timeout=10), pool_size=1)

        async def go() -> list[Outcome]:
            out = []
            for n, data in enumerate(messages):
                rcpt = f"r{n}@corp.example"
                result = await relay.deliver(Envelope("b@send.example", (rcpt,), data))
                out.append(result.of(rcpt).outcome)
            await relay.close()
            return out

        assert asyncio.run(go()) == [Outcome.ACCEPTED] * 3
    expected = [normalize_message_line_endings(m) for m in messages]
    assert [r.data for r in handler.received] == expected
