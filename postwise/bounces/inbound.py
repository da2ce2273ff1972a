"""The inbound SMTP listener for the VERP bounce domain (``postwise inbound``).

Point the bounce domain's MX record here (or a relay's transport for that domain):
every bounce and complaint sent to ``bounces+TOKEN@bounce-domain`` is handed, with its
envelope, to ``intake.ingest``. The listener takes mail only for the bounce domain (any
other recipient gets ``550 5.7.1``: it is nobody's relay or mailbox), caps the message
size, and answers ``451`` when the database cannot take a message, so the sending MTA
retries instead of losing it. Built like the capture server (``delivery/capture.py``):
aiosmtpd on its own thread and event loop. See docs/bounces.md (intake).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import structlog
from aiosmtpd.controller import Controller

from postwise.bounces import intake

log = structlog.get_logger(__name__)


class InboundHandler:
    """aiosmtpd handler: recipients at the bounce domain only, intake on DATA."""

    def __init__(self, ctx: intake.Context, bounce_domain: str) -> None:
        self.ctx = ctx
        self.bounce_domain = bounce_domain.strip().lower().rstrip(".")

    def accepts(self, address: str) -> bool:
        domain = address.rsplit("@", 1)[-1].strip().lower().rstrip(".>")
        return not self.bounce_domain or domain == self.bounce_domain

    async def handle_RCPT(  # noqa: N802
        self, _server: Any, _session: Any, envelope: Any, address: str, _options: list[str]
    ) -> str:
        if not self.accepts(address):
            return f"550 5.7.1 <{address}>: this server takes mail for {self.bounce_domain} only"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content or b""
        mail_from = envelope.mail_from or ""
        rcpt = tuple(envelope.rcpt_tos)
        try:
            result = await asyncio.to_thread(
                intake.ingest,
                self.ctx,
                raw,
                source="smtp",
                envelope=intake.Envelope(mail_from, rcpt),
            )
        except Exception:
            log.exception("inbound: could not store message")
            return "451 4.3.0 Could not store the message; try again later"
        log.info(
            "bounce received",
            inbound_id=result.inbound_id,
            kind=result.kind,
            workspace_id=result.workspace_id,
            records=len(result.record_ids),
            size=len(raw),
        )
        return "250 2.0.0 Message accepted"


class _Controller(Controller):
    """Controller that also works with port 0 (the OS picks a free port)."""

    def _trigger_server(self) -> None:
        sockets = getattr(self.server, "sockets", None)
        if self.port == 0 and sockets:
            self.port = sockets[0].getsockname()[1]
        super()._trigger_server()


class InboundServer:
    """The listener on its own thread and event loop."""

    def __init__(
        self,
        ctx: intake.Context,
        bounce_domain: str,
        host: str = "127.0.0.1",
        port: int = 2525,
        max_bytes: int = 10 * 1024 * 1024,
    ) -> None:
        mail_log = logging.getLogger("mail.log")
        if mail_log.level == logging.NOTSET:
            mail_log.setLevel(logging.WARNING)
        self._controller = _Controller(
            InboundHandler(ctx, bounce_domain),
            hostname=host,
            port=port,
            server_hostname=bounce_domain or "postwise-inbound",
            data_size_limit=max_bytes,
        )

    @property
    def host(self) -> str:
        return str(self._controller.hostname)

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def start(self) -> None:
        """Bind and serve; raises ``OSError`` if the address is taken."""
        self._controller.start()
        log.info("inbound SMTP server listening", host=self.host, port=self.port)

    def stop(self) -> None:
        self._controller.stop()
