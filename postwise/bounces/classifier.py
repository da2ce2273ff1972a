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

_LITERAL = frozenset("abcdefghijklmnopqrstuvwxyz0123456789 ,;:'\"=-_/@#<>!%&`~")
_QUANTIFIERS = frozenset("?*{")


def _anchor(pattern: str) -> str:
    """The longest literal run a match of ``pattern`` must contain ("" if none is sure).

    Searching a lowered diagnostic for it with ``in`` costs far less than running the
    regex, so the regex runs only where its anchor is present. Only runs outside groups
    and classes count, minus a last character a quantifier makes optional.
    """
    best, run, depth, i = "", "", 0, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if depth == 0 and nxt in ".()[]{}?*+|$^\\-":
                run += nxt
                i += 2
                continue
            best, run = max(best, run, key=len), ""
            i += 2
            continue
        if depth == 0 and c.lower() in _LITERAL and c == c.lower():
            if i + 1 < len(pattern) and pattern[i + 1] in _QUANTIFIERS:
                best, run = max(best, run, key=len), ""
            else:
                run += c
            i += 1
            continue
        best, run = max(best, run, key=len), ""
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "[":
            close = pattern.find("]", i + 2)
            i = close if close > 0 else len(pattern)
        i += 1
    return max(best, run, key=len).strip()


def _compiled(table: list[tuple[str, str]]) -> list[tuple[str, str, re.Pattern[str]]]:
    return [
        (reason, _anchor(pattern), re.compile(pattern, re.IGNORECASE)) for reason, pattern in table
    ]


_STRONG = _compiled(phrases.STRONG_PHRASES)
_PHRASES = _compiled(phrases.PHRASES)
# "550-5.7.1" markers of a multi-line SMTP reply, which split the remote's sentence.
_CONTINUATION = re.compile(r"\s[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}(?=\s)")
_DELAYED = re.compile(phrases.DELAYED, re.IGNORECASE)
_SPACES = re.compile(r"\s+")
_BOILERPLATE = re.compile("|".join(phrases.BOILERPLATE), re.IGNORECASE)
_FILTER_WORDING = _compiled([("filter", pattern) for pattern in phrases.FILTER_WORDING])
_SENDER_SIDE = frozenset(
    {"blocked", "userunknown", "hostunknown", "filtered", "onhold", "undefined", None}
)
_GREETING = frozenset({"CONNECT", "EHLO", "HELO"})
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
    diagnostic = _SPACES.sub(" ", _CONTINUATION.sub(" ", _BOILERPLATE.sub(" ", diagnostic)))
    lowered = diagnostic.lower()
    for reason, anchor, pattern in _STRONG:
        if anchor in lowered and pattern.search(diagnostic):
            return reason, True
    for reason, anchor, pattern in _PHRASES:
        if anchor in lowered and pattern.search(diagnostic):
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
    lowered = diagnostic.lower()
    filter_wording = any(
        anchor in lowered and pattern.search(diagnostic) for _, anchor, pattern in _FILTER_WORDING
    )
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
    if reason == "userunknown" and command == "DATA" and not code_key.startswith("x.1."):
        reason = "filtered"  # the address was accepted at RCPT: a filter said "unknown"
    if command in _GREETING and reason in ("onhold", "undefined", None):
        reason = "blocked"  # refused before any address was named: the sending host
    if command == "MAIL" and reason in _SENDER_SIDE and code_key not in ("x.1.1", "x.1.2"):
        reason = "rejected"  # refused at MAIL FROM: the sender, not the recipient
    if reason is None and reply_code is not None:
        reason = phrases.REPLY.get(reply_code)
    if reason is None:
        if action == "delayed" or _DELAYED.search(diagnostic):
            reason = "expired"
        elif status or reply_code or diagnostic.strip():
            reason = "onhold"  # something was said, in words no table knows yet
        else:
            reason = "undefined"
    return _verdict(reason, status, reply_code, filter_wording)


def _verdict(
    reason: str, status: str | None, reply_code: int | None, filter_wording: bool
) -> Verdict:
    temporary = (status or "").startswith("4") or (reply_code is not None and reply_code < 500)
    hard = reason in phrases.HARD_REASONS and not (reason == "notaccept" and temporary)
    return Verdict(reason, hard, filter_wording)
