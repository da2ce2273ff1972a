"""The parser never raises: mutated corpus messages (truncated, flipped bytes, wrong
charsets, dropped parts, huge) all come back as a ``ParsedMessage``.

Intake keeps every inbound message; an exception here would stop it (docs/bounces.md).
Runs on a few built-in samples when the shared corpus is absent.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postwise.bounces.parser import MAX_BYTES, parse_message
from postwise.bounces.report import Kind, ParsedMessage

CORPORA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus").resolve()

BUILT_IN = [
    b"From: MAILER-DAEMON@x.example\r\nSubject: failure notice\r\n\r\n"
    b"<a@b.example>:\r\n550 5.1.1 user unknown\r\n\r\n"
    b"--- Below this line is a copy of the message.\r\n\r\n"
    b"Return-Path: <bounces+t1@bounce.example>\r\nMessage-ID: <m@x>\r\n\r\nhi\r\n",
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822; a@b.example\r\n"
    b"Action: failed\r\nStatus: 5.2.2\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Message-ID: <m@x>\r\n\r\nbody\r\n--b--\r\n",
    b'Content-Type: multipart/report; report-type=feedback-report; boundary="f"\r\n\r\n'
    b"--f\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
    b"Original-Rcpt-To: a@b.example\r\n--f--\r\n",
]


def _samples() -> list[bytes]:
    files = sorted((CORPORA / "bounces" / "emails").glob("*.eml"))[::4]
    files += sorted((CORPORA / "bounces-flufl" / "emails").glob("*.txt"))[::4]
    return [p.read_bytes() for p in files] + BUILT_IN


SAMPLES = _samples()
_CHARSET = re.compile(rb"charset=\"?[\w-]+\"?", re.I)
_BOUNDARY_LINE = re.compile(rb"^--[^\r\n]+$", re.M)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = draw(st.sampled_from(SAMPLES))
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["truncate", "flip", "charset", "drop", "insert", "repeat"]))
        if how == "truncate" and raw:
            raw = raw[: draw(st.integers(0, len(raw)))]
        elif how == "flip" and raw:
            data = bytearray(raw)
            for _ in range(draw(st.integers(1, 20))):
                i = draw(st.integers(0, len(data) - 1))
                data[i] = draw(st.integers(0, 255))
            raw = bytes(data)
        elif how == "charset":
            name = draw(
                st.sampled_from([b"bogus-9", b"utf-7", b"iso-2022-jp", b"", b"utf-16", b"x"])
            )
            raw = _CHARSET.sub(b"charset=" + name, raw)
        elif how == "drop":
            raw = _BOUNDARY_LINE.sub(b"", raw, count=draw(st.integers(1, 3)))
        elif how == "insert":
            at = draw(st.integers(0, len(raw)))
            raw = raw[:at] + draw(st.binary(max_size=200)) + raw[at:]
        elif how == "repeat":
            raw = raw * draw(st.integers(2, 50))
    return raw


def _well_formed(parsed: ParsedMessage) -> None:
    assert isinstance(parsed, ParsedMessage)
    assert isinstance(parsed.kind, Kind)
    if parsed.kind is Kind.UNPARSED:
        assert parsed.unparsed_reason
    for r in parsed.recipients:
        assert r.recipient is None or r.recipient == r.recipient.lower()
        assert isinstance(r.reason, str) and r.reason


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_corpus_messages_never_raise(raw: bytes) -> None:
    _well_formed(parse_message(raw))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    _well_formed(parse_message(raw))


def test_enormous_message_is_capped_and_still_read() -> None:
    head = BUILT_IN[1]
    raw = head + b"x" * (MAX_BYTES + 1000)
    parsed = parse_message(raw)
    assert parsed.kind is Kind.BOUNCE
    assert parsed.recipients[0].recipient == "a@b.example"
    assert parsed.unparsed_reason and "truncated" in parsed.unparsed_reason


def test_empty_and_headerless_input_is_unparsed_with_reason() -> None:
    for raw in (b"", b"   \r\n", b"\x00\x01\x02"):
        parsed = parse_message(raw)
        assert parsed.kind is Kind.UNPARSED and parsed.unparsed_reason


def test_pathological_text_parses_in_bounded_time() -> None:
    """Long runs of address-like characters must not make any search quadratic."""
    head = b"From: MAILER-DAEMON@x.example\r\nSubject: failure notice\r\n\r\n"
    bodies = [
        b"-" * 1_500_000,  # a line of dashes (local-part characters, no @)
        b"QUJD" * 400_000,  # a base64 blob on one line
        b"a-" * 700_000 + b"@b.example",
        b"a@" + b"b-" * 700_000,
        b"<a@b.example>:\r\n550 user unknown\r\n" * 60_000,
        b"connect to " * 150_000,
    ]
    for body in bodies:
        started = time.process_time()
        parsed = parse_message(head + body)
        assert time.process_time() - started < 3, body[:20]
        assert parsed.kind in (Kind.BOUNCE, Kind.UNPARSED)
