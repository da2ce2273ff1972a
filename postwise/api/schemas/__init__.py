"""Request and response models of the management API, one module per resource.

Request models refuse unknown fields and check shapes (text, number, object), so that
OpenAPI documents them and a misspelt field is named in the problem. What a value must
*mean* (a valid address, a known country, an attribute's declared type) is checked once,
by the domain in ``contacts/fields.py`` and ``contacts/attributes.py``, which the CSV
importer and tracking share; the routes pass only the fields a client sent
(``model_dump(exclude_unset=True)``), so "absent" and "null" stay different.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, field_validator

from postwise.api.problems import PROBLEM_JSON
from postwise.core.pagination import MAX_LIMIT

T = TypeVar("T")

# Ids are 64-bit on PostgreSQL; SQLite cannot even bind a larger integer.
MAX_ID = 2**63 - 1

ObjectId = Annotated[int, Path(ge=1, le=MAX_ID, description="The object's id.")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")]
Cursor = Annotated[
    str | None,
    Query(max_length=200, description="next_cursor of the previous page, passed back unchanged."),
]


class StrictModel(BaseModel):
    """Base of request bodies: unknown fields are errors, and no text may hold NUL
    (PostgreSQL cannot store it)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain a NUL character (\\u0000)")
        return value


class FieldErrorOut(BaseModel):
    field: str | None
    code: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of the API is answered."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    field: str | None
    errors: list[FieldErrorOut] | None = None


_MEANING = {
    400: "The input breaks a rule; `field` and `errors` say which and why.",
    401: "No API key, or an unknown or revoked one.",
    403: "The API key lacks the scope this operation needs (code `missing_scope`).",
    404: "Nothing with that id in the key's workspace.",
    409: "It would duplicate something that exists.",
    413: "The request body or the number of rows is over the configured limit.",
    422: "The request is malformed: bad JSON, a wrong type, an unknown field.",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the errors an operation can answer, as problem+json."""
    return {
        status: {
            "model": Problem,
            "description": _MEANING[status],
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


COMMON_PROBLEMS = problem_responses(401, 403, 422)


class PageOut(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None
