"""``/api/companies``: accounts, found by filters, and the contacts that work for them.

Conventions (keys, pages, errors): docs/api.md.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from sqlalchemy.orm import Session

from postwise.api.dependencies import require, scoped_session
from postwise.api.schemas import COMMON_PROBLEMS, Cursor, Limit, ObjectId, problem_responses
from postwise.api.schemas.companies import (
    CompanyDetail,
    CompanyIn,
    CompanyOut,
    CompanyPage,
    CompanyPatch,
)
from postwise.api.schemas.contacts import ContactOut, ContactPage
from postwise.contacts import actions, companies
from postwise.contacts.fields import SIZE_BANDS
from postwise.storage.tables import Company
from postwise.workspaces.scopes import Scope

router = APIRouter(prefix="/api/companies", tags=["companies"], responses=COMMON_PROBLEMS)

# scope="function": commit before the response is sent (see routes/contacts.py).
Reader = Annotated[Session, Depends(scoped_session(Scope.COMPANIES_READ), scope="function")]
Writer = Annotated[Session, Depends(scoped_session(Scope.COMPANIES_WRITE), scope="function")]


def _detail(session: Session, company: Company) -> CompanyDetail:
    return CompanyDetail.model_validate(
        {
            **CompanyOut.model_validate(company).model_dump(),
            "contact_count": companies.contact_count(session, company.id),
        }
    )


@router.get("", response_model=CompanyPage, summary="Search companies")
def search_companies(
    session: Reader,
    q: Annotated[str | None, Query(max_length=200, description="Part of domain or name.")] = None,
    industry: Annotated[str | None, Query(max_length=100)] = None,
    size_band: Annotated[
        str | None, Query(max_length=32, description=f"One of: {', '.join(SIZE_BANDS)}.")
    ] = None,
    country: Annotated[str | None, Query(max_length=2, description="ISO alpha-2.")] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> CompanyPage:
    page = companies.search_companies(
        session,
        q=q,
        industry=industry,
        size_band=size_band,
        country=country,
        cursor=cursor,
        limit=limit,
    )
    return CompanyPage(
        data=[CompanyOut.model_validate(c) for c in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "",
    response_model=CompanyDetail,
    status_code=status.HTTP_201_CREATED,
    summary="Create a company",
    description="Contacts already on file at the domain are linked to it.",
    responses=problem_responses(400, 409, 413),
)
def create_company(session: Writer, body: CompanyIn) -> CompanyDetail:
    return _detail(session, companies.create_company(session, body.model_dump(exclude_unset=True)))


@router.put(
    "",
    response_model=CompanyDetail,
    summary="Create or update a company by domain",
    description="201 when the company was created, 200 otherwise; only the fields sent change.",
    responses={
        **problem_responses(400, 413),
        201: {"model": CompanyDetail, "description": "Created"},
    },
)
def upsert_company(session: Writer, body: CompanyIn, response: Response) -> CompanyDetail:
    company, created = companies.upsert_company(session, body.model_dump(exclude_unset=True))
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return _detail(session, company)


@router.get(
    "/{company_id}",
    response_model=CompanyDetail,
    summary="A company with its number of contacts",
    responses=problem_responses(404),
)
def get_company(session: Reader, company_id: ObjectId) -> CompanyDetail:
    return _detail(session, companies.get_company(session, company_id))


@router.patch(
    "/{company_id}",
    response_model=CompanyDetail,
    summary="Change some fields of a company",
    responses=problem_responses(400, 404, 409, 413),
)
def update_company(session: Writer, company_id: ObjectId, body: CompanyPatch) -> CompanyDetail:
    company = companies.update_company(session, company_id, body.model_dump(exclude_unset=True))
    return _detail(session, company)


@router.delete(
    "/{company_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a company; its contacts stay, unlinked",
    responses=problem_responses(404),
)
def delete_company(session: Writer, company_id: ObjectId) -> None:
    companies.delete_company(session, company_id)


@router.get(
    "/{company_id}/contacts",
    response_model=ContactPage,
    summary="The contacts of a company",
    description="Needs contacts:read as well as companies:read.",
    dependencies=[Depends(require(Scope.CONTACTS_READ))],
    responses=problem_responses(404),
)
def company_contacts(
    session: Reader,
    company_id: ObjectId,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> ContactPage:
    company = companies.get_company(session, company_id)
    page = actions.search_contacts(session, company_id=company.id, cursor=cursor, limit=limit)
    return ContactPage(
        data=[ContactOut.model_validate(c) for c in page.items], next_cursor=page.next_cursor
    )
