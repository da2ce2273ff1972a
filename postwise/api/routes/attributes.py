"""``/api/attributes``: declared custom attributes of contacts and companies.

Deleting a definition leaves stored values alone (rewriting every row would be costly
and lose data) but refuses new writes of the name until it is declared again.

Conventions (keys, pages, errors): docs/api.md.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from sqlalchemy.orm import Session

from postwise.api.dependencies import scoped_session
from postwise.api.schemas import COMMON_PROBLEMS, Cursor, Limit, ObjectId, problem_responses
from postwise.api.schemas.attributes import (
    AttributeIn,
    AttributeOut,
    AttributePage,
    AttributePatch,
)
from postwise.contacts import attributes
from postwise.contacts.attributes import Entity
from postwise.storage.tables import AttributeDefinition
from postwise.workspaces.scopes import Scope

router = APIRouter(prefix="/api/attributes", tags=["attributes"], responses=COMMON_PROBLEMS)

# Definitions shape contact and company data alike; the contacts scopes govern both.
# scope="function": commit before the response is sent (see routes/contacts.py).
Reader = Annotated[Session, Depends(scoped_session(Scope.CONTACTS_READ), scope="function")]
Writer = Annotated[Session, Depends(scoped_session(Scope.CONTACTS_WRITE), scope="function")]


@router.get("", response_model=AttributePage, summary="Search declared attributes")
def search_attributes(
    session: Reader,
    entity: Annotated[Entity | None, Query(description="Only those of this entity.")] = None,
    q: Annotated[str | None, Query(max_length=64, description="Part of the name.")] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> AttributePage:
    page = attributes.search_attributes(
        session, entity=entity.value if entity else None, q=q, cursor=cursor, limit=limit
    )
    return AttributePage(
        data=[AttributeOut.model_validate(a) for a in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "",
    response_model=AttributeOut,
    status_code=status.HTTP_201_CREATED,
    summary="Declare an attribute",
    responses=problem_responses(400, 409, 413),
)
def define_attribute(session: Writer, body: AttributeIn) -> AttributeDefinition:
    return attributes.define_attribute(
        session, body.entity.value, body.name, body.type.value, body.description
    )


@router.get(
    "/{attribute_id}",
    response_model=AttributeOut,
    summary="One attribute definition",
    responses=problem_responses(404),
)
def get_attribute(session: Reader, attribute_id: ObjectId) -> AttributeDefinition:
    return attributes.get_attribute(session, attribute_id)


@router.patch(
    "/{attribute_id}",
    response_model=AttributeOut,
    summary="Change an attribute's description",
    description="Name and type cannot change: stored values were checked against them. "
    "Declare a new attribute instead.",
    responses=problem_responses(400, 404, 413),
)
def update_attribute(
    session: Writer, attribute_id: ObjectId, body: AttributePatch
) -> AttributeDefinition:
    return attributes.update_attribute(session, attribute_id, body.description)


@router.delete(
    "/{attribute_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete an attribute definition",
    description="Stored values stay as they are; writing the attribute is refused until "
    "it is declared again.",
    responses=problem_responses(404),
)
def delete_attribute(session: Writer, attribute_id: ObjectId) -> None:
    attributes.delete_attribute(session, attribute_id)
