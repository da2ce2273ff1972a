"""The in-memory fake transport: keeps envelopes, answers from a per-recipient script."""

from __future__ import annotations

from collections.abc import Callable

from postwise.delivery.transports.base import (
    DeliveryResult,
    Envelope,
    Outcome,
    Phase,
    RecipientResult,
    classify,
)

Answer = tuple[int | None, str]
ACCEPT: Answer = (250, "2.0.0 OK")


class MemoryTransport:
    """``answers`` maps a recipient to the SMTP answer it gets (default 250); a callable
    may be given instead to answer differently on each attempt."""

    name = "memory"

    def __init__(
        self,
        answers: dict[str, Answer] | None = None,
        answer: Callable[[str, int], Answer] | None = None,
    ) -> None:
        self.answers = dict(answers or {})
        self.answer = answer
        self.sent: list[Envelope] = []
        self.attempts: dict[str, int] = {}
        self.closed = False

    def _answer(self, rcpt: str) -> Answer:
        self.attempts[rcpt] = self.attempts.get(rcpt, 0) + 1
        if self.answer is not None:
            return self.answer(rcpt, self.attempts[rcpt])
        return self.answers.get(rcpt, ACCEPT)

    async def deliver(self, envelope: Envelope) -> DeliveryResult:
        results: dict[str, RecipientResult] = {}
        for rcpt in envelope.rcpt:
            code, reply = self._answer(rcpt)
            results[rcpt] = RecipientResult(classify(code), code, reply, Phase.RCPT)
        if any(r.outcome is Outcome.ACCEPTED for r in results.values()):
            self.sent.append(envelope)
        return DeliveryResult(self.name, results, "memory")

    async def close(self) -> None:
        self.closed = True
