"""The one error hierarchy a user sees.

Every error that crosses the API, the CLI or an import report is a ``PostwiseError``
with a stable machine ``code``, a message that says what to fix and, where one field
is at fault, its name. Library exceptions are translated into these where they enter
(storage, parsing); anything else is an internal error and is never shown verbatim.

    PostwiseError
    ├── ValidationFailed      400  input is malformed or breaks a rule
    ├── AuthenticationFailed  401  no key, unknown key, revoked key
    ├── PermissionDenied      403  key lacks the scope
    ├── NotFound              404  nothing with that id in this workspace
    ├── Conflict              409  would duplicate or contradict stored data
    └── PayloadTooLarge       413  request or row over the configured limit
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass
class FieldError:
    """One problem with one input field; many may travel in a single ValidationFailed."""

    field: str | None
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "code": self.code, "message": self.message}


class PostwiseError(Exception):
    status: ClassVar[int] = 400
    title: ClassVar[str] = "Request failed"
    default_code: ClassVar[str] = "error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        errors: list[FieldError] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.field = field
        self.errors = errors or []

    def __str__(self) -> str:
        where = f" (field: {self.field})" if self.field else ""
        return f"{self.message}{where}"


class ValidationFailed(PostwiseError):
    status = 400
    title = "Invalid input"
    default_code = "validation_failed"

    @classmethod
    def from_errors(cls, errors: list[FieldError]) -> ValidationFailed:
        first = errors[0]
        message = first.message if len(errors) == 1 else f"{len(errors)} problems: {first.message}"
        return cls(message, code=first.code, field=first.field, errors=errors)


class AuthenticationFailed(PostwiseError):
    status = 401
    title = "Authentication required"
    default_code = "unauthenticated"


class PermissionDenied(PostwiseError):
    status = 403
    title = "Not allowed"
    default_code = "forbidden"


class NotFound(PostwiseError):
    status = 404
    title = "Not found"
    default_code = "not_found"


class Conflict(PostwiseError):
    status = 409
    title = "Conflict"
    default_code = "conflict"


class PayloadTooLarge(PostwiseError):
    status = 413
    title = "Payload too large"
    default_code = "payload_too_large"
