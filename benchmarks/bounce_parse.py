"""Bounce parsing + classification: ``python -m benchmarks bounces``.

Reads every file of ``../shared/corpus/bounces/emails`` and ``../bounces-flufl/emails``
into memory, then times ``parse_message`` (MIME walk, DSN/ARF/text detection, phrase
tables) over them in this one process (one core, CPU time), beside a baseline measured in the same
run on the same bytes: ``email.message_from_bytes`` (compat32) plus decoding every leaf
part, which is the least any parser built on the standard library must do. The issue's
target is 2,000 messages/s. Figures only: nothing here asserts.
"""

from __future__ import annotations

import argparse
import email
import time
from collections.abc import Callable
from email.policy import compat32
from pathlib import Path

from postwise.bounces import classifier
from postwise.bounces.parser import parse_message

CORPORA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus").resolve()


def _baseline(raw: bytes) -> None:
    msg = email.message_from_bytes(raw, policy=compat32)
    for part in msg.walk():
        if not part.is_multipart():
            part.get_payload(decode=True)


def _pass(fn: Callable[[bytes], object], messages: list[bytes]) -> float:
    """Messages per second of CPU time: other processes on a shared machine do not count."""
    start = time.process_time()
    for raw in messages:
        fn(raw)
    return len(messages) / max(time.process_time() - start, 1e-9)


def _rates(messages: list[bytes], rounds: int) -> tuple[float, float]:
    """Best pass of each, passes interleaved so both see the same machine."""
    for raw in messages[:20]:  # warm up (regex compilation, imports)
        _baseline(raw)
        parse_message(raw)
    base = ours = 0.0
    for _ in range(rounds):
        base = max(base, _pass(_baseline, messages))
        classifier.clear_cache()  # each pass starts cold: no sentence is known yet
        ours = max(ours, _pass(parse_message, messages))
    return base, ours


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="passes over the corpus (best kept)")
    args = parser.parse_args(argv)
    files = sorted((CORPORA / "bounces" / "emails").glob("*.eml"))
    files += sorted((CORPORA / "bounces-flufl" / "emails").glob("*.txt"))
    if not files:
        raise SystemExit(f"no corpus at {CORPORA}")
    messages = [p.read_bytes() for p in files]
    size = sum(map(len, messages)) / len(messages)
    print(f"{len(messages)} messages, {size / 1024:.1f} KB average, best of {args.rounds} passes")
    base, ours = _rates(messages, args.rounds)
    print(f"baseline email.message_from_bytes + decode  {base:8,.0f} msg/s")
    print(f"parse_message (parse + classify)            {ours:8,.0f} msg/s")
    print(f"ratio                                       {ours / base:8.2f}x of the baseline")


if __name__ == "__main__":
    main()
