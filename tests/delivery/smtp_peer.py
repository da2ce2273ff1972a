"""A real SMTP server on loopback (aiosmtpd) that answers per recipient from a script."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Received:
    mail_from: str
    rcpt: list[str]
    data: bytes


@dataclass
class ScriptedHandler:
    rcpt_answers: dict[str, str] = field(default_factory=dict)  # address -> "550 5.1.1 ..."
    data_answers: dict[str, str] = field(default_factory=dict)  # first rcpt -> DATA answer
    drop_data_times: dict[str, int] = field(default_factory=dict)  # close before replying
    received: list[Received] = field(default_factory=list)
    connections: int = 0

    async def handle_EHLO(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        answer = self.rcpt_answers.get(address)
        if answer is not None:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        first = envelope.rcpt_tos[0]
        if self.drop_data_times.get(first, 0) > 0:
            self.drop_data_times[first] -= 1
            server.transport.close()
            return "421 closing"  # never reaches the client: the connection is gone
        answer = self.data_answers.get(first)
        if answer is not None:
            return answer
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        )
        return "250 2.0.0 queued"


class _AnyPortController(Controller):
    """port 0: learn the port the OS picked before aiosmtpd's self-check connects."""

    def _trigger_server(self) -> None:
        sockets = getattr(self.server, "sockets", None)
        if self.port == 0 and sockets:
            self.port = sockets[0].getsockname()[1]
        super()._trigger_server()


@contextmanager
def smtp_server(handler: ScriptedHandler) -> Iterator[tuple[str, int]]:
    controller = _AnyPortController(handler, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        yield "127.0.0.1", int(controller.port)
    finally:
        controller.stop()
