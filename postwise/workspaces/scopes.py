"""What an API key may do. ``admin`` implies every other scope."""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    CONTACTS_READ = "contacts:read"
    CONTACTS_WRITE = "contacts:write"
    COMPANIES_READ = "companies:read"
    COMPANIES_WRITE = "companies:write"
    LISTS_READ = "lists:read"
    LISTS_WRITE = "lists:write"
    SEGMENTS_READ = "segments:read"
    SEGMENTS_WRITE = "segments:write"
    PRIVACY = "privacy"
    SEND = "send"
    TRACK = "track"
    ADMIN = "admin"


ALL_SCOPES = frozenset(Scope)


def parse_scopes(values: list[str]) -> list[Scope]:
    from postwise.core.errors import FieldError, ValidationFailed

    known = {s.value: s for s in Scope}
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ValidationFailed.from_errors(
            [
                FieldError(
                    "scopes",
                    "unknown_scope",
                    f"unknown scope {v!r}; choose from {', '.join(sorted(known))}",
                )
                for v in unknown
            ]
        )
    return sorted({known[v] for v in values})


def grants(held: list[str] | frozenset[str], needed: Scope) -> bool:
    return Scope.ADMIN.value in held or needed.value in held
