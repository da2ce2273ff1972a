"""Header and body encodings, written for speed and for hostile input.

Every header value passes through ``clean`` first: CR, LF and other control characters
become spaces, so no contact field or subject can start a header of its own. Non-ASCII
text becomes RFC 2047 base64 encoded-words; address domains become punycode (IDNA);
bodies are quoted-printable with CRLF and lines of at most 76 characters.
"""

from __future__ import annotations

import base64
import re
from functools import lru_cache

import idna

from postwise.core.errors import ValidationFailed

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
_ATEXT_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]*")
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]{1,64}")
_MAX_LINE = 78
_ASCII_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")


def clean(value: str) -> str:
    """One line of text: controls (CR, LF, NUL, ...) to single spaces, outer space trimmed."""
    return " ".join(_CONTROL.sub(" ", value).split())


def _encoded_words(text: str) -> list[str]:
    """UTF-8 base64 encoded-words of at most 75 characters, never splitting a character."""
    words: list[str] = []
    chunk = ""
    for char in text:
        candidate = chunk + char
        if len(candidate.encode("utf-8")) > 45:
            words.append(chunk)
            chunk = char
        else:
            chunk = candidate
    if chunk:
        words.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(w.encode('utf-8')).decode('ascii')}?=" for w in words]


def fold(name: str, value: str) -> str:
    """Fold an ASCII value at spaces so lines stay near 78 characters."""
    if len(name) + 2 + len(value) <= _MAX_LINE:
        return value
    lines: list[str] = []
    current = ""
    width = len(name) + 2
    for word in value.split(" "):
        if current and width + len(current) + 1 + len(word) > _MAX_LINE:
            lines.append(current)
            current = word
            width = 1
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return "\r\n ".join(lines)


def text_value(name: str, value: str) -> str:
    """An unstructured header value (Subject): plain ASCII or encoded-words, folded."""
    value = clean(value)
    if value.isascii() and "=?" not in value and not _has_long_word(value):
        return fold(name, value)
    return "\r\n ".join(_encoded_words(value))


def _has_long_word(value: str) -> bool:
    """A word that cannot be folded onto one line; encoded-words split anywhere."""
    return len(value) > 60 and any(len(word) > 60 for word in value.split(" "))


def phrase(value: str) -> str:
    """A display name: bare atoms, a quoted string, or encoded-words."""
    value = clean(value)
    if not value:
        return ""
    if not value.isascii() or "=?" in value or _has_long_word(value):
        return "\r\n ".join(_encoded_words(value))
    if _ATEXT_PHRASE.fullmatch(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def address(value: str, *, field: str = "email") -> str:
    """``local@domain`` with the domain in punycode; refuses what SMTP cannot carry."""
    value = clean(value)
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise ValidationFailed(
            f"{value!r} is not an email address.", code="invalid_email", field=field
        )
    if not _LOCAL.fullmatch(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        raise ValidationFailed(
            f"The address {value!r} has a local part SMTP cannot carry without SMTPUTF8.",
            code="invalid_email",
            field=field,
        )
    ascii_domain = _ascii_domain(domain)
    if ascii_domain is None:
        raise ValidationFailed(
            f"The domain of {value!r} is not a valid domain name.",
            code="invalid_email",
            field=field,
        )
    if "." not in ascii_domain:
        raise ValidationFailed(f"{value!r} has no full domain.", code="invalid_email", field=field)
    return f"{local}@{ascii_domain}"


@lru_cache(maxsize=16384)
def _ascii_domain(domain: str) -> str | None:
    """Punycode form (lower case), or None; cached as one send repeats few domains."""
    if len(domain) > 253:
        return None
    if domain.isascii() and _ASCII_DOMAIN.fullmatch(domain):
        return domain.lower()
    try:
        return idna.encode(domain.rstrip("."), uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        return None


def mailbox(name: str, email: str, *, field: str = "email") -> str:
    """``Display Name <local@domain>`` or just ``<local@domain>``."""
    shown = phrase(name)
    addr = address(email, field=field)
    if not shown:
        return f"<{addr}>"
    if "\r\n" in shown:  # encoded-words, already one per line
        return f"{shown}\r\n <{addr}>"
    return fold("From", f"{shown} <{addr}>")  # FWS may sit inside a quoted string


_QP_SPECIAL = re.compile(rb"[^\t\n\x20-\x7e]+")  # "=" is replaced in bulk before
_QP_PLAIN = b"\t\n" + bytes(range(0x20, 0x7F))
_QP_TRAILING = re.compile(rb"[ \t]$", re.M)
_QP_HEX = [b"=%02X" % i for i in range(256)]


def _qp_escape(match: re.Match[bytes]) -> bytes:
    return b"".join([_QP_HEX[byte] for byte in match.group(0)])


def quoted_printable(text: str) -> bytes:
    """UTF-8 quoted-printable, CRLF line ends, lines <= 76, trailing spaces encoded.

    ``binascii.b2a_qp`` looks at every byte in a loop that costs ~10 ns a byte; mail is
    mostly ASCII with many "=" (HTML attributes), so bulk ``replace`` plus a regex for the
    rare other bytes is several times faster. The hypothesis tests decode the output.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    data = text.encode("utf-8").replace(b"=", b"=3D")
    if data.translate(None, _QP_PLAIN):  # any byte left is special (C speed, no regex scan)
        data = _QP_SPECIAL.sub(_qp_escape, data)
    # A two-byte search costs ~1 ns a byte; a tab (memchr) is rare, so look for it first.
    if b" \n" in data or (b"\t" in data and b"\t\n" in data) or data.endswith((b" ", b"\t")):
        data = _QP_TRAILING.sub(_qp_escape, data)
    lines = data.split(b"\n")
    out: list[bytes] = []
    for line in lines:
        start, end = 0, len(line)
        while end - start > 76:
            cut = start + 75
            if line[cut - 1] == 0x3D:  # never split "=XX"
                cut -= 1
            elif line[cut - 2] == 0x3D:
                cut -= 2
            out.append(line[start:cut] + b"=")
            start = cut
        out.append(line[start:] if start else line)
    return b"\r\n".join(out)
