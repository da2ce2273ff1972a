"""A recipient's code and sentence -> reason and hard/soft (tables in ``data/phrases.py``).

The sentence speaks first: a remote server's words ("mailbox full", "listed at
Spamhaus") are more precise than the code it chose, and codes like 5.0.0, 5.7.1 or 554
are used for everything. Specific RFC 3463 codes decide when no phrase matched. A
"user unknown" answered to DATA (after the address was accepted) is a filter, not an
unknown user. Hard means the address itself is gone (docs/bounces.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postwise.bounces.data import phrases


def _compiled(table: list[tuple[str, str]]) -> list[tuple[str, re.Pattern[str]]]:
    """One pattern per run of lines with the same reason: fewer searches per message."""
    out: list[tuple[str, str]] = []
    for reason, pattern in table:
        if out and out[-1][0] == reason:
            out[-1] = (reason, out[-1][1] + "|" + pattern)
        else:
            out.append((reason, pattern))
    return [(reason, re.compile(pattern, re.IGNORECASE)) for reason, pattern in out]


_STRONG = _compiled(phrases.STRONG_PHRASES)
_PHRASES = _compiled(phrases.PHRASES)
_BOILERPLATE = re.compile("|".join(phrases.BOILERPLATE), re.IGNORECASE)
_FILTER_WORDING = re.compile(phrases.FILTER_WORDING, re.IGNORECASE)
_SENDER_SIDE = frozenset(
    {"blocked", "userunknown", "hostunknown", "filtered", "onhold", "undefined", None}
)
_SUCCESS_ACTIONS = frozenset({"delivered", "relayed", "expanded"})


@dataclass(frozen=True)
class Verdict:
    reason: str
    hard: bool
    filter_wording: bool = False


def phrase_reason(diagnostic: str) -> str | None:
    """The first reason whose wording appears in ``diagnostic``."""
    return _searched(diagnostic)[0]


def _searched(diagnostic: str) -> tuple[str | None, bool]:
    """(reason, strong): strong when the wording is one that no code or command overrides."""
    if not diagnostic:
        return None, False
    diagnostic = _BOILERPLATE.sub(" ", diagnostic)
    for reason, pattern in _STRONG:
        if pattern.search(diagnostic):
            return reason, True
    for reason, pattern in _PHRASES:
        if pattern.search(diagnostic):
            return reason, False
    return None, False


def status_reason(status: str | None) -> str | None:
    if not status:
        return None
    _, _, rest = status.partition(".")
    return phrases.STATUS.get("x." + rest)


def is_vague(diagnostic: str) -> bool:
    """True when the sentence names no reason (a DSN whose Diagnostic-Code is bare)."""
    return phrase_reason(diagnostic) is None


def classify(
    *,
    status: str | None,
    reply_code: int | None,
    diagnostic: str,
    action: str | None = None,
    command: str | None = None,
    fixed_reason: str | None = None,
) -> Verdict:
    filter_wording = bool(diagnostic and _FILTER_WORDING.search(diagnostic))
    if fixed_reason:
        return _verdict(fixed_reason, status, reply_code, filter_wording)
    if action in _SUCCESS_ACTIONS or (status or "").startswith("2."):
        return Verdict("delivered", False, filter_wording)
    said, strong = _searched(diagnostic)
    if said is not None and strong:
        return _verdict(said, status, reply_code, filter_wording)
    by_code = status_reason(status)
    code_key = "x." + status.partition(".")[2] if status else ""
    reason = said or (None if action == "delayed" else by_code)
    if code_key in phrases.STATUS_OVER_PHRASE or (
        said == "userunknown" and code_key in phrases.STATUS_OVER_USERUNKNOWN
    ):
        reason = by_code
    if reason == "userunknown" and command == "DATA":
        reason = "filtered"  # the address was accepted at RCPT: a filter said "unknown"
    if command == "MAIL" and reason in _SENDER_SIDE:
        reason = "rejected"  # refused at MAIL FROM: the sender, not the recipient
    if reason is None and reply_code is not None:
        reason = phrases.REPLY.get(reply_code)
    if reason is None:
        if action == "delayed":
            reason = "expired"
        elif status or reply_code:
            reason = "onhold"
        else:
            reason = "undefined"
    return _verdict(reason, status, reply_code, filter_wording)


def _verdict(
    reason: str, status: str | None, reply_code: int | None, filter_wording: bool
) -> Verdict:
    temporary = (status or "").startswith("4") or (reply_code is not None and reply_code < 500)
    hard = reason in phrases.HARD_REASONS and not (reason == "notaccept" and temporary)
    return Verdict(reason, hard, filter_wording)
