"""Email address normalization: domain lower-cased and IDNA-encoded, local part kept as given.

Most addresses in a B2B list are plain ASCII; a strict pattern accepts those quickly and
everything else goes through ``email-validator`` (RFC 5321/6531 rules, IDNA). The fast
path only ever accepts what the full validator accepts (see the property test).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from postwise.core.errors import ValidationFailed

MAX_LENGTH = 254

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_FAST = re.compile(rf"({_ATOM}(?:\.{_ATOM})*)@((?:{_LABEL}\.)+[A-Za-z]{{2,63}})")


@dataclass(frozen=True, slots=True)
class Email:
    address: str
    local: str
    domain: str


def normalize_email(raw: str) -> Email:
    """The canonical form used as the unique key of a contact, or a ValidationFailed."""
    text = (raw or "").strip()
    if not text:
        raise ValidationFailed("email is required", code="email_required", field="email")
    if len(text) > MAX_LENGTH:
        raise ValidationFailed(
            f"email is longer than {MAX_LENGTH} characters", code="invalid_email", field="email"
        )
    match = _FAST.fullmatch(text)
    if match and len(match.group(1)) <= 64:
        local, domain = match.group(1), match.group(2).lower()
        return Email(f"{local}@{domain}", local, domain)
    try:
        checked = validate_email(text, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise ValidationFailed(
            f"{text!r} is not a valid email address: {exc}", code="invalid_email", field="email"
        ) from None
    domain = checked.ascii_domain.lower()
    return Email(f"{checked.local_part}@{domain}", checked.local_part, domain)


def normalize_domain(raw: str) -> str:
    """A company or suppression domain: lower-case IDNA, no scheme, path or leading 'www.'."""
    text = (raw or "").strip().lower()
    text = re.sub(r"^[a-z][a-z0-9+.-]*://", "", text).split("/", 1)[0].split("@")[-1]
    text = text.rstrip(".")
    if text.startswith("www."):
        text = text[4:]
    try:
        ascii_domain = text.encode("idna").decode("ascii") if not text.isascii() else text
    except UnicodeError:
        raise ValidationFailed(
            f"{raw!r} is not a valid domain", code="invalid_domain", field="domain"
        ) from None
    if not re.fullmatch(rf"(?:{_LABEL}\.)+(?:[a-z]{{2,63}}|xn--[a-z0-9-]{{1,59}})", ascii_domain):
        raise ValidationFailed(
            f"{raw!r} is not a valid domain", code="invalid_domain", field="domain"
        )
    return ascii_domain
