"""Accuracy of parsing + classification over the shared bounce corpora, read in place.

``../shared/corpus/bounces`` (Sisimai's samples with labels) and
``../shared/corpus/bounces-flufl`` (flufl.bounce's samples with expected addresses) sit
beside the project root. A held-out third of both is measured the same way elsewhere, so
the rules are formats and phrases, never file names (docs/bounces.md).
"""

from __future__ import annotations

import csv
import functools
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from postwise.bounces.parser import parse_message
from postwise.bounces.report import Kind, ParsedMessage, RecipientOutcome

CORPORA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus").resolve()
SISIMAI = CORPORA / "bounces"
FLUFL = CORPORA / "bounces-flufl"

RECIPIENT_TARGET = 0.98
REASON_TARGET = 0.90
HARD_TARGET = 0.97
FLUFL_TARGET = 0.95


def _require(folder: Path) -> None:
    if not (folder / "labels.csv").is_file():
        pytest.skip(f"corpus not found at {folder} (it sits beside the project root in CI)")


@dataclass
class Scores:
    rows: int = 0
    reason_ok: int = 0
    hard_ok: int = 0
    with_recipient: int = 0
    recipient_ok: int = 0
    status_class_ok: int = 0
    with_status: int = 0


def _labelled() -> dict[str, list[dict[str, str]]]:
    rows: dict[str, list[dict[str, str]]] = defaultdict(list)
    with (SISIMAI / "labels.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            rows[row["file"]].append(row)
    return rows


def _parsed() -> Iterator[tuple[str, list[dict[str, str]], ParsedMessage]]:
    for name, rows in sorted(_labelled().items()):
        yield name, rows, parse_message((SISIMAI / "emails" / name).read_bytes())


def _match(row: dict[str, str], index: int, parsed: ParsedMessage) -> RecipientOutcome | None:
    """The outcome for a label row: by address when it has one, else by position."""
    outs = parsed.recipients
    if row["recipient"]:
        for out in outs:
            if out.recipient == row["recipient"]:
                return out
    if not outs:
        return None
    return outs[index] if index < len(outs) else outs[0]


def _print_report(scores: Scores, confusion: Counter[tuple[str, str]], misses: list[str]) -> None:
    pct = lambda a, b: f"{a}/{b} = {100 * a / max(b, 1):.1f}%"  # noqa: E731
    print()
    print("== bounce corpus accuracy (../shared/corpus/bounces) ==")
    print(f"recipient found      {pct(scores.recipient_ok, scores.with_recipient)}")
    print(f"reason == label      {pct(scores.reason_ok, scores.rows)}")
    print(f"hard/soft == label   {pct(scores.hard_ok, scores.rows)}")
    print(f"status class == label {pct(scores.status_class_ok, scores.with_status)}")
    print("confusion (label -> ours), misses only:")
    for (label, ours), count in confusion.most_common():
        print(f"  {count:3d}  {label:16s} -> {ours}")
    if misses:
        print("recipients not found:", ", ".join(misses))


@functools.cache
def _scored() -> tuple[Scores, Counter[tuple[str, str]], list[str], list[str]]:
    """Score every labelled row once; the target tests below share the result."""
    scores = Scores()
    confusion: Counter[tuple[str, str]] = Counter()
    misses: list[str] = []
    kinds_wrong: list[str] = []
    for name, rows, parsed in _parsed():
        for index, row in enumerate(rows):
            if row["kind"] == "not_bounce":
                if parsed.kind is not Kind.NOT_BOUNCE:
                    kinds_wrong.append(f"{name}: {parsed.kind}")
                continue
            if (
                row["kind"] in ("complaint", "autoreply", "delivered")
                and parsed.kind != row["kind"]
            ):
                kinds_wrong.append(f"{name}: {row['kind']} read as {parsed.kind}")
            out = _match(row, index, parsed)
            scores.rows += 1
            if row["recipient"]:
                scores.with_recipient += 1
                if out is not None and out.recipient == row["recipient"]:
                    scores.recipient_ok += 1
                else:
                    misses.append(name)
            reason = out.reason if out else "(none)"
            if reason == row["reason"]:
                scores.reason_ok += 1
            else:
                confusion[(row["reason"], reason)] += 1
            if (out.hard if out else False) == (row["hardbounce"] == "1"):
                scores.hard_ok += 1
            if row["status"]:
                scores.with_status += 1
                if out and out.status and out.status[0] == row["status"][0]:
                    scores.status_class_ok += 1
    return scores, confusion, misses, kinds_wrong


def test_sisimai_corpus_summary_and_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints the figures and the confusion table; every message is read as its kind."""
    _require(SISIMAI)
    scores, confusion, misses, kinds_wrong = _scored()
    with capsys.disabled():
        _print_report(scores, confusion, misses)
    assert not kinds_wrong, kinds_wrong


def test_recipient_found_for_98_percent() -> None:
    _require(SISIMAI)
    scores = _scored()[0]
    assert scores.recipient_ok / scores.with_recipient >= RECIPIENT_TARGET


def test_reason_equals_label_for_90_percent() -> None:
    _require(SISIMAI)
    scores = _scored()[0]
    assert scores.reason_ok / scores.rows >= REASON_TARGET


def test_hard_soft_equals_label_for_97_percent() -> None:
    _require(SISIMAI)
    scores = _scored()[0]
    assert scores.hard_ok / scores.rows >= HARD_TARGET


def test_autoreplies_and_ordinary_mail_are_not_bounces() -> None:
    _require(SISIMAI)
    for name, rows, parsed in _parsed():
        kind = rows[0]["kind"]
        if kind == "autoreply":
            assert parsed.kind is Kind.AUTOREPLY, name
            assert all(not r.hard for r in parsed.recipients)
        elif kind == "not_bounce":
            assert parsed.kind is Kind.NOT_BOUNCE, name
            assert parsed.recipients == ()


def test_complaints_carry_their_feedback_type() -> None:
    _require(SISIMAI)
    seen = 0
    for name, rows, parsed in _parsed():
        if rows[0]["kind"] != "complaint":
            continue
        seen += 1
        assert parsed.kind is Kind.COMPLAINT, name
        types = {r.feedback_type for r in parsed.recipients}
        assert types == {rows[0]["feedbacktype"]}, name
    assert seen >= 10


def test_flufl_expected_addresses_found(capsys: pytest.CaptureFixture[str]) -> None:
    """Every address a flufl detector (or its whole pipeline) expects, in our recipients."""
    _require(FLUFL)
    expected: dict[str, set[str]] = defaultdict(set)
    with (FLUFL / "labels.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            expected[row["file"]].update(a.lower() for a in row["expected_addresses"].split())
    samples = [name for name, addrs in expected.items() if addrs]
    found = 0
    missed: list[str] = []
    for name in sorted(samples):
        parsed = parse_message((FLUFL / "emails" / name).read_bytes())
        ours = {r.recipient for r in parsed.recipients if r.recipient}
        if expected[name] <= ours:
            found += 1
        else:
            missed.append(f"{name} (want {sorted(expected[name] - ours)}, got {sorted(ours)})")
    with capsys.disabled():
        print()
        print("== flufl.bounce samples (../shared/corpus/bounces-flufl) ==")
        print(
            f"expected addresses found  {found}/{len(samples)} = {100 * found / len(samples):.1f}%"
        )
        for line in missed:
            print("  missed:", line)
    assert found / len(samples) >= FLUFL_TARGET
