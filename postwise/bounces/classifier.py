"""A recipient's code and sentence -> reason and hard/soft (tables in ``data/phrases.py``).

The sentence speaks first: a remote server's words ("mailbox full", "listed at
Spamhaus") are more precise than the code it chose, and codes like 5.0.0, 5.7.1 or 554
are used for everything. Specific RFC 3463 codes decide when no phrase matched. A
"user unknown" answered to DATA (after the address was accepted) is a filter, not an
unknown user. Hard means the address itself is gone (docs/bounces.md).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from postwise.bounces.data import origins as origin_tables
from postwise.bounces.data import phrases

_LITERAL = frozenset("abcdefghijklmnopqrstuvwxyz0123456789 ,;:'\"=-_/@#<>!%&`~")
_QUANTIFIERS = frozenset("?*{")


_WORD = re.compile(r"[a-z0-9]+")


def _runs(pattern: str) -> list[tuple[str, bool]]:
    """The literal runs a match of ``pattern`` must contain, each with whether it starts a
    word (it opens the pattern or follows ``\\b``: phrases are written from a word's start).

    Only runs outside groups and classes count, minus a last character a quantifier
    makes optional.
    """
    runs: list[tuple[str, bool]] = []
    run, starts, depth, i = "", True, 0, 0

    def close(next_starts: bool) -> None:
        nonlocal run, starts
        if run.strip():
            runs.append((run, starts))
        run, starts = "", next_starts

    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if depth == 0 and nxt in ".()[]{}?*+|$^\\-":
                run += nxt
            else:
                close(depth == 0 and nxt == "b")
            i += 2
            continue
        if depth == 0 and c == c.lower() and (c in _LITERAL or (c.isalpha() and ord(c) > 127)):
            if i + 1 < len(pattern) and pattern[i + 1] in _QUANTIFIERS:
                close(False)
            else:
                run += c
            i += 1
            continue
        close(False)
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "[":
            end = pattern.find("]", i + 2)
            i = end if end > 0 else len(pattern)
        i += 1
    close(False)
    return runs


def _key(pattern: str) -> tuple[frozenset[str], str]:
    """What a text must hold before ``pattern`` is worth running: (words, substring).

    A word bounded inside a literal run is a whole word of any text the pattern matches,
    so set look-ups rule most patterns out; the longest other piece (a word cut by the
    run's edge, or non-ASCII wording) is searched as a substring. Both cost far less than
    the regex.
    """
    words: set[str] = set()
    partial = ""
    for run, starts_word in _runs(pattern):
        for m in _WORD.finditer(run):
            whole = (
                (not run[m.start() - 1].isalnum() if m.start() > 0 else starts_word)
                and m.end() < len(run)
                and not run[m.end()].isalnum()
            )
            if whole:
                words.add(m.group())
            elif len(m.group()) > len(partial):
                partial = m.group()
        if not _WORD.search(run) and len(run.strip()) > len(partial):
            partial = run.strip()  # non-ASCII wording (Japanese, ...)
    return frozenset(words), partial


_LEADING_GROUP = re.compile(r"^\(\?:([^()\[\]]*)\)(.*)$")


def _expanded(pattern: str) -> list[str]:
    """``(?:a|b) rest`` as ``a rest`` and ``b rest``: each line then has a literal to look for."""
    m = _LEADING_GROUP.match(pattern)
    if not m or "|" not in m.group(1) or m.group(2)[:1] in ("?", "*", "+", "{"):
        return [pattern]
    return [alt + m.group(2) for alt in m.group(1).split("|")]


def _compiled(
    table: list[tuple[str, str]],
) -> list[tuple[str, frozenset[str], str, re.Pattern[str]]]:
    return [
        (reason, *_key(alt), re.compile(alt, re.IGNORECASE))
        for reason, pattern in table
        for alt in _expanded(pattern)
    ]


_STRONG = _compiled(phrases.STRONG_PHRASES)
_PHRASES = _compiled(phrases.PHRASES)
# One table in search order (strong lines first), and an index from a word each line
# needs to the lines needing it: a diagnostic's words pick the few lines worth testing.
_TABLE = [(*entry, True) for entry in _STRONG] + [(*entry, False) for entry in _PHRASES]
# Lines needing no whole word are grouped by the substring they need, so one substring
# test rules out every line sharing it.
_GATES: dict[str, list[int]] = {}
_UNGATED: dict[str, list[int]] = {}
for _i, _entry in enumerate(_TABLE):
    if _entry[1]:
        _GATES.setdefault(max(_entry[1], key=len), []).append(_i)
    else:
        _UNGATED.setdefault(_entry[2], []).append(_i)
_GATE_WORDS = frozenset(_GATES)

# "550-5.7.1" markers of a multi-line SMTP reply, which split the remote's sentence.
_CONTINUATION = re.compile(r"\s[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}(?=\s)")
_DELAYED = re.compile(phrases.DELAYED, re.IGNORECASE)
_BOILERPLATE = re.compile("|".join(phrases.BOILERPLATE), re.IGNORECASE)
# Each boilerplate line's opening words: on ASCII text (where IGNORECASE is plain
# lower-casing) a sentence holding none of them has nothing to remove.
_BOILERPLATE_CUES = tuple(" ".join(line.split()[:2]) for line in phrases.BOILERPLATE)
_FILTER_WORDING = _compiled([("filter", pattern) for pattern in phrases.FILTER_WORDING])
_SENDER_SIDE = frozenset(
    {"blocked", "userunknown", "hostunknown", "filtered", "onhold", "undefined", None}
)
_GREETING = frozenset({"CONNECT", "EHLO", "HELO"})
_BEFORE_DATA = frozenset({"CONNECT", "EHLO", "HELO", "MAIL", "RCPT"})
_SUCCESS_ACTIONS = frozenset({"delivered", "relayed", "expanded"})


_ORIGIN_WORDING = {
    name: [(re.compile(pattern, re.IGNORECASE), reason, cmd) for pattern, reason, cmd in lines]
    for name, lines in origin_tables.WORDING.items()
}
# Look-behind after the first digit (same matches): the engine then skips to a 4 or 5.
_STATUS_IN_TEXT = re.compile(r"([45](?<![\w.][45])\.\d{1,3}\.\d{1,3})(?![\w.]*\d)")
_ORANGE_CODE = re.compile(r"\b(?:ofr|lpn|ouk)\w*?_?(\d{3})\b", re.IGNORECASE)
_AUP_CODE = re.compile(r"AUP#[A-Za-z]*-?(\d{4})")


def origin_reason(
    origins: tuple[str, ...], diagnostic: str, status: str | None, command: str | None
) -> tuple[str | None, str | None]:
    """(reason, command) the writer's or the remote provider's own wording says, if any.

    Exchange's MSEXCH codes, Gmail's ``(state N)``, au's "550 : User unknown": their
    meaning is the writer's (``data/origins.py``), so it comes before generic phrases.
    """
    for name in origins:
        for pattern, reason, cmd in _ORIGIN_WORDING.get(name, ()):
            if pattern.search(diagnostic):
                if name in origin_tables.CODE_FIRST and status and not status.endswith(".0"):
                    key = "x." + status.partition(".")[2]
                    named = phrases.STATUS.get(key) or origin_tables.CODE_FIRST_NAMES.get(key)
                    reason = named or reason  # a precise code still wins
                return reason, cmd
        if name == "spectrum":
            m = _AUP_CODE.search(diagnostic)
            code = int(m.group(1)) if m else 0
            for first, last, reason in origin_tables.SPECTRUM_CODES:
                if first <= code <= last:
                    return reason, None
        if (
            name == "nttdocomo"
            and status in (None, "5.0.0")
            and "unknown user" in diagnostic.lower()
        ):
            # at RCPT the address is unknown; after DATA the user's settings refuse the sender
            if command == "RCPT":
                return "userunknown", None
            if command == "DATA":
                return "rejected", None
    return None, None


@dataclass(frozen=True)
class Verdict:
    reason: str
    hard: bool
    filter_wording: bool = False


def phrase_reason(diagnostic: str) -> str | None:
    """The first reason whose wording appears in ``diagnostic``."""
    return _searched(diagnostic)[0]


@functools.lru_cache(maxsize=4096)
def _searched(diagnostic: str) -> tuple[str | None, bool]:
    """(reason, strong): strong when the wording is one that no code or command overrides."""
    if not diagnostic:
        return None, False
    if not diagnostic.isascii() or any(cue in diagnostic.lower() for cue in _BOILERPLATE_CUES):
        diagnostic = _BOILERPLATE.sub(" ", diagnostic)
    diagnostic = " ".join(_CONTINUATION.sub(" ", diagnostic).split())
    lowered = diagnostic.lower()
    words = set(_WORD.findall(lowered))
    table = _TABLE
    candidates = [
        i
        for word in words & _GATE_WORDS
        for i in _GATES[word]
        if table[i][1] <= words and table[i][2] in lowered
    ]
    for piece, lines in _UNGATED.items():
        if piece in lowered:
            candidates.extend(lines)
    candidates.sort()  # the tables' order: the first line that matches wins
    for i in candidates:
        reason, _, _, pattern, strong = table[i]
        if pattern.search(diagnostic):
            return reason, strong
    return None, False


@functools.lru_cache(maxsize=4096)
def _filter_wording(diagnostic: str) -> bool:
    """Whether the sentence speaks of a filter (spam, policy, blocklist...)."""
    lowered = diagnostic.lower()
    words = set(_WORD.findall(lowered))
    return any(
        needed <= words and piece in lowered and pattern.search(diagnostic)
        for _, needed, piece, pattern in _FILTER_WORDING
    )


def clear_cache() -> None:
    """Forget the sentences already read (benchmarks start each pass cold)."""
    _searched.cache_clear()
    _filter_wording.cache_clear()


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
    origins: tuple[str, ...] = (),
    find_status: bool = True,
) -> Verdict:
    """``find_status``: read a code written in the sentence when ``status`` is None (the
    parser has already looked, and says False)."""
    lowered = diagnostic.lower()
    filter_wording = _filter_wording(diagnostic)
    if status is None and find_status and "." in diagnostic:
        written = _STATUS_IN_TEXT.search(diagnostic)  # a code in the sentence is its status
        status = written.group(1) if written else None
    if fixed_reason:
        return _verdict(fixed_reason, status, reply_code, filter_wording)
    if action in _SUCCESS_ACTIONS or (status or "").startswith("2."):
        return Verdict("delivered", False, filter_wording)
    if "ofr" in lowered or "lpn" in lowered or "ouk" in lowered:
        orange = _ORANGE_CODE.search(diagnostic)
        numbered = origin_tables.ORANGE_CODES.get(orange.group(1)) if orange else None
        if numbered is not None:
            return _verdict(numbered, status, reply_code, filter_wording)
    if origins:
        told, told_command = origin_reason(origins, diagnostic, status, command)
        command = told_command or command
        if told is not None:
            return _verdict(told, status, reply_code, filter_wording)
    said, strong = _searched(diagnostic)
    if said is not None and strong:
        return _verdict(said, status, reply_code, filter_wording)
    by_code = status_reason(status)
    code_key = "x." + status.partition(".")[2] if status else ""
    reason = said or (None if action == "delayed" else by_code)
    if code_key in phrases.STATUS_OVER_PHRASE:
        reason = by_code
    elif said == "userunknown" and code_key in phrases.STATUS_OVER_USERUNKNOWN:
        reason = "filtered" if command != "RCPT" else said
    if (
        reason == "userunknown"
        and said == "userunknown"
        and not code_key.startswith("x.1.")
        and command not in _BEFORE_DATA
    ):
        reason = "filtered"  # not known to be said at RCPT, nor by an x.1 code: a filter
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
