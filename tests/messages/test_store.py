"""Template actions on both databases: versions, the compiled cache, lookups, recipients."""

from __future__ import annotations

import pytest

from postwise.contacts.actions import create_contact
from postwise.contacts.attributes import define_attribute
from postwise.contacts.companies import create_company
from postwise.core.errors import NotFound, ValidationFailed
from postwise.messages import store
from postwise.storage.database import Database
from postwise.workspaces.actions import create_workspace


def test_versions_cache_and_lookup(db: Database) -> None:
    with db.system() as s:
        ws, other = (create_workspace(s, n).workspace_id for n in ("Acme", "Other"))
    with db.tenant(ws) as s:
        row = store.create_template(
            s, store.TemplateInput(name="Welcome", subject="Hi", html="<p>v1</p>")
        )
        first = store.template_lookup(s, str(row.id))
        assert store.template_lookup(s, "Welcome") is first  # compiled once per version
        store.update_template(s, row.id, {"html": "<p>v2</p>"})
        second = store.template_lookup(s, "Welcome")
        assert second is not first and "v2" in second.html_source and row.version == 2
        with pytest.raises(ValidationFailed) as err:
            store.update_template(s, row.id, {"html": "{{ nope }}"})
        assert err.value.field == "html:1"
    with db.tenant(ws) as s:
        assert store.get_template(s, row.id).html == "<p>v2</p>"  # the refused change wrote nothing
    with db.tenant(other) as s, pytest.raises(NotFound):
        store.template_lookup(s, str(row.id))


def test_recipient_for_flattens_fields_attributes_and_company(db: Database) -> None:
    with db.system() as s:
        ws = create_workspace(s, "Acme").workspace_id
    with db.tenant(ws) as s:
        define_attribute(s, "contact", "plan", "string")
        create_company(s, {"domain": "corp.example", "name": "Corp"})
        contact = create_contact(
            s, {"email": "ann@corp.example", "first_name": "Ann", "attributes": {"plan": "pro"}},
            source="api",
        )  # fmt: skip
        recipient = store.recipient_for(s, contact, tracking_consent=False)
    assert recipient.fields["first_name"] == "Ann" and recipient.fields["plan"] == "pro"
    assert recipient.name == "Ann" and recipient.email == "ann@corp.example"
    assert recipient.company is not None and recipient.company["name"] == "Corp"
    assert not recipient.tracking_consent


def test_a_reused_id_never_gets_the_old_compiled_template(db: Database) -> None:
    with db.system() as s:
        ws = create_workspace(s, "Acme").workspace_id
    with db.tenant(ws) as s:
        old = store.create_template(
            s, store.TemplateInput(name="A", subject="Old", html="<p>a</p>")
        )
        assert store.template_lookup(s, str(old.id)).render({}).subject == "Old"
        store.delete_template(s, old.id)
        new = store.create_template(
            s, store.TemplateInput(name="B", subject="New", html="<p>b</p>")
        )
        assert new.version == old.version  # same (id, version) on SQLite, which reuses ids
        assert store.template_lookup(s, str(new.id)).render({}).subject == "New"
