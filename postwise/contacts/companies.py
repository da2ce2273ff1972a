"""Companies (accounts) and the automatic link from a contact's email domain."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from postwise.contacts.attributes import AttributeSchema, Entity
from postwise.contacts.fields import clean_company
from postwise.contacts.freemail import is_free_mail
from postwise.core.clock import utcnow
from postwise.core.errors import Conflict, NotFound
from postwise.core.pagination import Page, keyset_page
from postwise.segments import changes as segment_changes
from postwise.storage.tables import Company, Contact


def companies_for_domains(session: Session, domains: Iterable[str]) -> dict[str, Company]:
    """The company of each business domain, creating the missing ones; free-mail skipped."""
    wanted = {d for d in domains if d and not is_free_mail(d)}
    if not wanted:
        return {}
    found = {
        c.domain: c for c in session.scalars(select(Company).where(Company.domain.in_(wanted)))
    }
    for domain in sorted(wanted - found.keys()):
        company = Company(domain=domain)
        session.add(company)
        found[domain] = company
    session.flush()
    return found


def create_company(session: Session, data: Mapping[str, Any]) -> Company:
    values = clean_company(data, AttributeSchema.load(session, Entity.COMPANY))
    if session.scalar(select(Company.id).where(Company.domain == values["domain"])) is not None:
        raise Conflict(
            f"a company with domain {values['domain']!r} already exists",
            code="company_exists",
            field="domain",
        )
    company = Company(**values)
    session.add(company)
    session.flush()
    _link_contacts(session, company)
    return company


def upsert_company(session: Session, data: Mapping[str, Any]) -> tuple[Company, bool]:
    """Create the company of ``data['domain']`` or update the fields given; (company, created)."""
    values = clean_company(data, AttributeSchema.load(session, Entity.COMPANY))
    company = session.scalar(select(Company).where(Company.domain == values["domain"]))
    if company is None:
        company = Company(**values)
        session.add(company)
        session.flush()
        _link_contacts(session, company)
        return company, True
    _changed(session, company, _apply(company, values))
    session.flush()
    return company, False


def update_company(session: Session, company_id: int, data: Mapping[str, Any]) -> Company:
    company = get_company(session, company_id)
    values = clean_company(data, AttributeSchema.load(session, Entity.COMPANY), partial=True)
    if "domain" in values and values["domain"] != company.domain:
        clash = session.scalar(select(Company.id).where(Company.domain == values["domain"]))
        if clash is not None:
            raise Conflict(
                f"a company with domain {values['domain']!r} already exists",
                code="company_exists",
                field="domain",
            )
    _changed(session, company, _apply(company, values))
    session.flush()
    return company


def _apply(company: Company, values: Mapping[str, Any]) -> list[str]:
    """Set the values that differ; the changed field names (``company.X``) for segments."""
    changed = []
    for key, value in values.items():
        if key == "attributes":
            changed += [
                f"company.attributes.{k}"
                for k, v in value.items()
                if company.attributes.get(k) != v
            ]
            value = {**company.attributes, **value}
        elif getattr(company, key) != value:
            changed.append(f"company.{key}")
        if getattr(company, key) != value:
            setattr(company, key, value)
    if changed:
        company.updated_at = utcnow()
    return changed


def _changed(session: Session, company: Company, fields: list[str]) -> None:
    """Segments on these company fields re-evaluate the company's contacts (docs/segments.md)."""
    if fields:
        contacts = session.scalars(select(Contact.id).where(Contact.company_id == company.id))
        segment_changes.note(session, contacts, [segment_changes.field_key(f) for f in fields])


def _link_contacts(session: Session, company: Company) -> None:
    """Contacts already on file at this domain belong to the new company."""
    unlinked = (Contact.email_domain == company.domain, Contact.company_id.is_(None))
    ids = list(session.scalars(select(Contact.id).where(*unlinked)))
    if ids:
        session.execute(update(Contact).where(*unlinked).values(company_id=company.id))
        segment_changes.note(session, ids, [segment_changes.COMPANY])


def get_company(session: Session, company_id: int) -> Company:
    company = session.get(Company, company_id)
    if company is None:
        raise NotFound(f"company {company_id} does not exist in this workspace")
    return company


def contact_count(session: Session, company_id: int) -> int:
    return int(
        session.scalar(select(func.count(Contact.id)).where(Contact.company_id == company_id)) or 0
    )


def delete_company(session: Session, company_id: int) -> None:
    """Contacts stay; they lose the link (and regain it if the domain is added again)."""
    company = get_company(session, company_id)
    linked = session.scalars(select(Contact.id).where(Contact.company_id == company.id))
    segment_changes.note(session, linked, [segment_changes.COMPANY])
    session.execute(update(Contact).where(Contact.company_id == company.id).values(company_id=None))
    session.delete(company)
    session.flush()


def search_companies(
    session: Session,
    *,
    q: str | None = None,
    industry: str | None = None,
    size_band: str | None = None,
    country: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Company]:
    stmt = select(Company)
    if q:
        stmt = stmt.where(
            or_(
                Company.domain.icontains(q, autoescape=True),
                Company.name.icontains(q, autoescape=True),
            )
        )
    if industry:
        stmt = stmt.where(Company.industry == industry)
    if size_band:
        stmt = stmt.where(Company.size_band == size_band)
    if country:
        stmt = stmt.where(Company.country == country.upper())
    return keyset_page(session, stmt, Company.id, cursor, limit)
