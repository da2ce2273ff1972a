"""Template actions: create, update, delete, read, preview, and the compiled-template cache.

Every save validates (syntax, unknown variables with line numbers, sandbox escapes) and
compiles (MJML, CSS inlining, text part) before anything is written, so a stored template
always renders. ``version`` grows with each save; ``compiled`` caches per (id, version),
so a worker inlines CSS once per template version. See docs/messages.md.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from postwise.contacts.fields import COMPANY_FIELDS, CONTACT_FIELDS
from postwise.core.clock import utcnow
from postwise.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from postwise.messages.pipeline import (
    Delivery,
    MessageBuilder,
    MessageKind,
    Recipient,
    Sender,
)
from postwise.messages.templates import CompiledTemplate, TemplateSource, compile_template
from postwise.storage.tables import AttributeDefinition, Company, Contact, Template

KINDS = ("marketing", "transactional")
_EDITABLE = ("name", "kind", "subject", "preheader", "html", "text", "mjml")


@dataclass(frozen=True)
class TemplateInput:
    name: str
    subject: str
    kind: str = "marketing"
    preheader: str = ""
    html: str = ""
    text: str = ""
    mjml: str = ""


def known_variables(session: Session) -> dict[str, list[str]]:
    """What ``contact.X`` and ``company.X`` may name in this workspace (fields + attributes)."""
    declared: dict[str, list[str]] = {"contact": [], "company": []}
    for entity, name in session.execute(
        select(AttributeDefinition.entity, AttributeDefinition.name)
    ):
        declared.setdefault(entity, []).append(name)
    contact = [f for f in CONTACT_FIELDS if f != "attributes"] + ["id", *declared["contact"]]
    company = [f for f in COMPANY_FIELDS if f != "attributes"] + ["id", *declared["company"]]
    return {"contact": contact, "company": company}


def source_of(template: Template) -> TemplateSource:
    return TemplateSource(
        subject=template.subject,
        preheader=template.preheader,
        html=template.html,
        text=template.text,
        mjml=template.mjml,
    )


def _check(session: Session, values: Mapping[str, Any]) -> CompiledTemplate:
    errors: list[FieldError] = []
    name = str(values["name"]).strip()
    if not name or len(name) > 200:
        errors.append(FieldError("name", "invalid_name", "A name of 1 to 200 characters."))
    if values["kind"] not in KINDS:
        errors.append(FieldError("kind", "invalid_kind", f"kind is one of {', '.join(KINDS)}."))
    source = TemplateSource(
        subject=values["subject"],
        preheader=values["preheader"],
        html=values["html"],
        text=values["text"],
        mjml=values["mjml"],
    )
    if errors:
        raise ValidationFailed.from_errors(errors)
    return compile_template(source, known_variables(session))


def _name_free(session: Session, name: str, template_id: int | None) -> None:
    found = session.scalar(select(Template.id).where(Template.name == name))
    if found is not None and found != template_id:
        raise Conflict(f"A template named {name!r} exists.", code="template_exists", field="name")


def create_template(session: Session, data: TemplateInput) -> Template:
    values = {k: getattr(data, k) for k in _EDITABLE}
    values["name"] = data.name.strip()
    _check(session, values)
    _name_free(session, values["name"], None)
    template = Template(**values, version=1)
    session.add(template)
    session.flush()
    return template


def get_template(session: Session, template_id: int) -> Template:
    template = session.get(Template, template_id)
    if template is None:
        raise NotFound(f"No template {template_id}.", code="template_not_found", field="id")
    return template


def list_templates(session: Session) -> list[Template]:
    return list(session.scalars(select(Template).order_by(Template.name)))


def update_template(session: Session, template_id: int, changes: Mapping[str, Any]) -> Template:
    template = get_template(session, template_id)
    unknown = set(changes) - set(_EDITABLE)
    if unknown:
        raise ValidationFailed(f"Cannot change {sorted(unknown)}.", code="invalid_field")
    values = {k: changes.get(k, getattr(template, k)) for k in _EDITABLE}
    values["name"] = str(values["name"]).strip()
    _check(session, values)
    _name_free(session, values["name"], template.id)
    for key, value in values.items():
        setattr(template, key, value)
    template.version += 1
    template.updated_at = utcnow()
    session.flush()
    return template


def delete_template(session: Session, template_id: int) -> None:
    session.delete(get_template(session, template_id))
    session.flush()


def validate_source(session: Session, data: TemplateInput) -> list[FieldError]:
    """Every problem, without saving; an empty list means it would save."""
    values = {k: getattr(data, k) for k in _EDITABLE}
    try:
        _check(session, values)
    except ValidationFailed as exc:
        return exc.errors or [FieldError(exc.field, exc.code, exc.message)]
    return []


class _Cache:
    """Compiled templates by a digest of their source; bounded, shared by threads.

    Keyed by content, not by (id, version): SQLite may hand a deleted template's id to
    a new one, and a test database is rebuilt under the same ids; neither may ever get
    another template's compiled form.
    """

    def __init__(self, size: int = 256) -> None:
        self._items: OrderedDict[bytes, CompiledTemplate] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def get(self, source: TemplateSource) -> CompiledTemplate:
        digest = hashlib.sha256()
        for part in (source.subject, source.preheader, source.html, source.text, source.mjml):
            encoded = part.encode("utf-8", "surrogatepass")
            digest.update(len(encoded).to_bytes(8, "big") + encoded)
        key = digest.digest()
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        compiled = compile_template(source)
        with self._lock:
            self._items[key] = compiled
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return compiled


_CACHE = _Cache()


def compiled(template: Template) -> CompiledTemplate:
    """The ready-to-render template for this row (compiled once per process and version)."""
    return _CACHE.get(source_of(template))


def template_lookup(session: Session, reference: str) -> CompiledTemplate:
    """The compiled template named by id ("42") or name ("Welcome") in the session's workspace.

    Fits ``delivery.compose.TemplateLookup``; raises NotFound (code ``template_not_found``).
    """
    ref = str(reference).strip()
    template: Template | None
    if ref.isdigit() and len(ref) <= 18:
        template = session.get(Template, int(ref))
    else:
        template = session.scalar(select(Template).where(Template.name == ref))
    if template is None:
        raise NotFound(f"No template {ref!r}.", code="template_not_found", field="template")
    return compiled(template)


def recipient_for(session: Session, contact: Contact, *, tracking_consent: bool) -> Recipient:
    """The template's view of a contact: its fields, custom attributes and company."""
    fields: dict[str, Any] = dict(contact.attributes or {})
    for name in CONTACT_FIELDS:
        if name != "attributes":
            value = getattr(contact, name)
            if value is not None:
                fields[name] = value
    fields["id"] = contact.id
    company: dict[str, Any] | None = None
    if contact.company_id is not None:
        row = session.get(Company, contact.company_id)
        if row is not None:
            company = dict(row.attributes or {})
            for name in COMPANY_FIELDS:
                if name != "attributes" and getattr(row, name) is not None:
                    company[name] = getattr(row, name)
            company["id"] = row.id
    name = " ".join(p for p in (contact.first_name, contact.last_name) if p)
    return Recipient(
        email=contact.email,
        contact_id=contact.id,
        name=name,
        fields=fields,
        company=company,
        tracking_consent=tracking_consent,
    )


def preview_sender(settings: Mapping[str, Any], base_url: str) -> Sender:
    """The workspace's sender (``workspace.settings["sender"]``) or a visible stand-in.

    A preview must render before the sender is configured; the stand-in values say so
    in the message itself rather than failing.
    """
    configured = settings.get("sender") or {}
    address = str(configured.get("from_address") or "sender-not-configured@postwise.invalid")
    domain = address.rpartition("@")[2]
    return Sender(
        from_address=address,
        from_name=str(configured.get("from_name") or ""),
        sending_domain=str(configured.get("sending_domain") or domain),
        bounce_domain=str(configured.get("bounce_domain") or domain),
        base_url=base_url,
        postal_address=str(
            configured.get("postal_address")
            or "[postal address not configured: set it before sending]"
        ),
        workspace_name=str(configured.get("workspace_name") or ""),
    )


@dataclass(frozen=True)
class Preview:
    subject: str
    preheader: str
    html: str
    text: str
    raw: str  # the whole message as a transport would receive it (unsigned)


def preview_template(
    session: Session,
    template_id: int,
    *,
    contact_id: int,
    data: Mapping[str, Any],
    sender: Sender,
    builder: MessageBuilder,
) -> Preview:
    """Render for one contact exactly as a send would, without tracking or a signature."""
    template = get_template(session, template_id)
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"No contact {contact_id}.", code="contact_not_found", field="contact_id")
    recipient = recipient_for(session, contact, tracking_consent=False)
    kind: MessageKind = "transactional" if template.kind == "transactional" else "marketing"
    delivery = Delivery(
        message_id=0, workspace_id=template.workspace_id, kind=kind, data=dict(data)
    )
    draft = builder.run(compiled(template), recipient, sender, delivery)
    return Preview(
        subject=draft.subject,
        preheader=draft.preheader,
        html=draft.html,
        text=draft.text,
        raw=draft.data.decode("ascii"),
    )
