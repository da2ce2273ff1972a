"""The parser's speed-ups read exactly what the plain forms read.

Each fast path (a regex rewritten so the engine can skip ahead, a lower-cased search in
place of IGNORECASE, the cached content type, the grouped phrase gating) must give the
same answer as the straightforward form it replaced, on any text (docs/bounces.md).
"""

from __future__ import annotations

import email
import re
from email.policy import compat32

from hypothesis import given, settings
from hypothesis import strategies as st

from postwise.bounces import classifier, parser
from postwise.bounces.data import formats

# Fragments that make the patterns fire, mixed with arbitrary text.
_PIECES = [
    "550",
    "451",
    "5.1.1",
    "4.2.2",
    " ",
    "-",
    ".",
    ":",
    "/",
    "#",
    "[",
    "=",
    "x",
    "\n",
    "in reply to RCPT TO",
    "after end of data",
    "while talking to mx: >>> DATA",
    "SMTP:RCPT",
    "[RCPT_TO",
    "Command: MAIL FROM",
    "failed after I sent the message",
    "most progress was RCPT TO response",
    "user unknown",
    "mailbox full",
    "blocked",
    "spam",
    "K",  # Kelvin sign: folds to k under IGNORECASE
    "é",
]
_TEXT = st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=6)), max_size=30).map("".join)

_REPLY_PLAIN = re.compile(r"(?<![\w.\-/:#=\[])([45][0-5]\d)(?=[\s\-:]|$)")
_STATUS_PLAIN = re.compile(r"(?<![\w.])([45]\.\d{1,3}\.\d{1,3})(?![\w.]*\d)")


def _span(pattern: re.Pattern[str], text: str) -> tuple[int, int] | None:
    m = pattern.search(text)
    return m.span(1) if m else None


@settings(max_examples=400, deadline=None)
@given(_TEXT)
def test_code_patterns_match_their_plain_forms(text: str) -> None:
    assert _span(parser._REPLY_RE, text) == _span(_REPLY_PLAIN, text)
    assert _span(parser._STATUS_RE, text) == _span(_STATUS_PLAIN, text)
    assert _span(classifier._STATUS_IN_TEXT, text) == _span(_STATUS_PLAIN, text)


def _command_plain(text: str) -> str | None:
    m = formats.SMTP_COMMAND.search(text)
    return m.group("cmd").upper() if m else None


@settings(max_examples=400, deadline=None)
@given(_TEXT)
def test_lower_cased_command_search_agrees_on_ascii(text: str) -> None:
    if text.isascii():
        m = formats.SMTP_COMMAND_LOWER.search(text.lower())
        assert (m.group("cmd").upper() if m else None) == _command_plain(text)


def _searched_plain(diagnostic: str) -> tuple[str | None, bool]:
    """Every table line in order, no gating: what the gated search must agree with."""
    if not diagnostic:
        return None, False
    diagnostic = " ".join(
        classifier._CONTINUATION.sub(" ", classifier._BOILERPLATE.sub(" ", diagnostic)).split()
    )
    for reason, _, _, pattern, strong in classifier._TABLE:
        if pattern.search(diagnostic):
            return reason, strong
    return None, False


_SENTENCES = st.lists(
    st.sampled_from(
        [
            "550 5.1.1 user unknown",
            "mailbox is full",
            "message expired",
            "listed at spamhaus",
            "SPF check failed",
            "host or domain name not found",
            "relay access denied",
            "too many recipients this hour",
            "account is disabled",
            "メールボックスがいっぱい",
            "rejected for policy reasons",
            "This is a permanent error; I've given up.",
            "THE ERROR THAT THE OTHER SERVER RETURNED WAS:",
            "this is",
            "the",
            "not",
            "recipient",
        ]
    )
    | st.text(max_size=8),
    max_size=6,
).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(_SENTENCES)
def test_gated_phrase_search_agrees_with_the_full_table(sentence: str) -> None:
    classifier.clear_cache()
    assert classifier._searched(sentence) == _searched_plain(sentence)


def test_cached_content_type_follows_header_changes() -> None:
    raw = b"Content-Type: text/plain\r\nSubject: x\r\n\r\nbody\r\n"
    msg = parser._message_from_bytes(raw)
    plain = email.message_from_bytes(raw, policy=compat32)
    assert msg.get_content_type() == plain.get_content_type() == "text/plain"
    msg.replace_header("Content-Type", "message/delivery-status")
    assert msg.get_content_type() == "message/delivery-status"
    del msg["Content-Type"]
    assert msg.get_content_type() == "text/plain"
    msg["Content-Type"] = "multipart/report"
    assert msg.get_content_type() == "multipart/report"
    msg.set_default_type("message/rfc822")
    del msg["Content-Type"]
    assert msg.get_content_type() == "message/rfc822"


def test_non_ascii_headers_read_as_compat32_reads_them() -> None:
    raw = "Subject: caf\u00e9 =?utf-8?q?d=C3=A9j=C3=A0?=\r\nFrom: a@b.example\r\n\r\nx\r\n".encode()
    ours = parser._message_from_bytes(raw)
    plain = email.message_from_bytes(raw, policy=compat32)
    assert [(k, str(v)) for k, v in ours.items()] == [(k, str(v)) for k, v in plain.items()]
