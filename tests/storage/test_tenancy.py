"""The session, not each query, keeps workspaces apart."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, insert, select, update

from postwise.storage.database import Database
from postwise.storage.tables import Company, Contact, Workspace
from postwise.storage.tenancy import CrossWorkspaceWrite


@pytest.fixture
def two_workspaces(db: Database) -> tuple[int, int]:
    with db.system() as s:
        a, b = Workspace(name="A"), Workspace(name="B")
        s.add_all([a, b])
        s.flush()
        ids = (a.id, b.id)
    for ws in ids:
        with db.tenant(ws) as s:
            company = Company(domain=f"ws{ws}.example")
            s.add(company)
            s.flush()
            s.add(
                Contact(
                    email=f"x@ws{ws}.example", email_domain=f"ws{ws}.example", company_id=company.id
                )
            )
    return ids


def test_unfiltered_reads_see_only_own_workspace(
    db: Database, two_workspaces: tuple[int, int]
) -> None:
    a, b = two_workspaces
    with db.tenant(a) as s:
        assert s.scalars(select(Contact.email)).all() == [f"x@ws{a}.example"]
        assert s.scalar(select(func.count()).select_from(Contact)) == 1
        joined = s.execute(select(Contact.email, Company.domain).join(Company)).all()
        assert [tuple(r) for r in joined] == [(f"x@ws{a}.example", f"ws{a}.example")]
        assert s.scalars(
            select(Company.domain).where(Company.id.in_(select(Contact.company_id)))
        ).all() == [f"ws{a}.example"]
        other = s.scalar(select(Contact).where(Contact.email == f"x@ws{b}.example"))
        assert other is None


def test_unfiltered_updates_and_deletes_touch_only_own_workspace(
    db: Database, two_workspaces: tuple[int, int]
) -> None:
    a, b = two_workspaces
    with db.tenant(a) as s:
        s.execute(update(Contact).values(first_name="Changed"))
        s.execute(delete(Company).where(Company.domain == f"ws{b}.example"))
    with db.tenant(b) as s:
        contact = s.scalars(select(Contact)).one()
        assert contact.first_name is None
        assert s.scalar(select(func.count()).select_from(Company)) == 1


def test_new_rows_are_stamped_and_foreign_rows_refused(
    db: Database, two_workspaces: tuple[int, int]
) -> None:
    a, b = two_workspaces
    with db.tenant(a) as s:
        company = Company(domain="new.example")
        s.add(company)
        s.flush()
        assert company.workspace_id == a
    with pytest.raises(CrossWorkspaceWrite), db.tenant(a) as s:
        s.add(Company(domain="sneaky.example", workspace_id=b))
        s.flush()
    with pytest.raises(CrossWorkspaceWrite), db.tenant(a) as s:
        s.execute(insert(Company), [{"domain": "bulk.example", "workspace_id": b}])
    with db.tenant(b) as s:
        assert s.scalars(select(Company.domain)).all() == [f"ws{b}.example"]
