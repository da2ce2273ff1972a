"""Turning an outbox row into bytes: prebuilt rows as they are, the rest through
``postwise.messages`` (template, personalization, MIME, DKIM).

Templates come from a ``TemplateLookup``; until templates are stored, a row may carry
its template inline under ``data["$template"]`` (``POST /api/messages`` with subject,
html and text). Whatever fails here is permanent for that row (``failed``), never a
retry loop. Whether a message carries tracked links and the open pixel is decided per
contact by ``tracking.consent`` (the workspace's ``tracking`` setting and the contact's
``email_tracking`` attribute).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from postwise.core.errors import ValidationFailed
from postwise.delivery.outbox import Claimed
from postwise.storage.tables import Company, Contact, Workspace
from postwise.tracking import consent

INLINE_TEMPLATE = "$template"
# A row's own sender ({"from_address", "from_name", "reply_to", "sending_domain"}, each
# optional), e.g. a campaign's or its variant's; checked when the row was queued.
ROW_SENDER = "$sender"
SETTINGS_TTL_SECONDS = 30.0  # a changed workspace setting reaches a running deliverer this fast


@dataclass(frozen=True)
class Built:
    mail_from: str
    rcpt: str
    data: bytes
    message_id: str | None
    links: tuple[str, ...] | None = None  # original URLs; stored for click redirects
    wire: bytes | None = None  # the SMTP DATA payload (transports/base.py ``wire_payload``)


class BuildError(Exception):
    """The row cannot become a message (bad template, no template, bad address)."""


Composer = Callable[[Session, Claimed], Built]
TemplateLookup = Callable[[Session, str], Any]  # -> postwise.messages CompiledTemplate


def no_templates(_session: Session, template_id: str) -> Any:
    raise BuildError(
        f"template {template_id!r} cannot be loaded: no template store is configured; "
        "send with an inline template (subject, html, text) instead"
    )


# Compiled templates by session and (id, version): ``store.compiled`` finds a template by
# a SHA-256 of its ~20 KB source, which cost every message that; a deliverer's session
# lives for one chunk, so within it the row (and its version) is the one already read.
_SESSION_TEMPLATES: weakref.WeakKeyDictionary[Session, dict[tuple[int, int], Any]] = (
    weakref.WeakKeyDictionary()
)


def stored_templates(session: Session, template_id: str) -> Any:
    """A template of ``postwise.messages.store``, compiled once per process and version."""
    from postwise.core.errors import NotFound
    from postwise.messages import store

    try:
        template = store.get_template(session, int(template_id))
    except (NotFound, ValueError) as exc:
        raise BuildError(f"template {template_id!r} does not exist (any more)") from exc
    memo = _SESSION_TEMPLATES.get(session)
    if memo is None:
        memo = _SESSION_TEMPLATES[session] = {}
    key = (template.id, template.version)
    found = memo.get(key)
    if found is None:
        found = memo[key] = store.compiled(template)
    return found


def prebuilt(_session: Session, row: Claimed) -> Built:
    if row.raw is None or not row.mail_from:
        raise BuildError("the row has no prebuilt message")
    return Built(row.mail_from, row.email, row.raw, row.message_id)


class TemplateComposer:
    """Prebuilt rows as they are; other rows through one shared ``MessageBuilder``."""

    def __init__(
        self,
        sender: Any,
        builder: Any,
        templates: TemplateLookup = no_templates,
        *,
        dkim_secret: bytes | None = None,
    ) -> None:
        self.sender = sender  # postwise.messages.pipeline.Sender
        self.builder = builder  # postwise.messages.pipeline.MessageBuilder
        self.templates = templates
        self.dkim_secret = dkim_secret
        self._inline: dict[str, Any] = {}
        self._senders: dict[int, Any] = {}
        self._domain_keys: dict[tuple[int, str], Any] = {}
        self._settings: dict[int, tuple[float, dict[str, Any]]] = {}

    def _workspace_settings(self, session: Session, workspace_id: int) -> dict[str, Any]:
        """The workspace's settings, read at most every ``SETTINGS_TTL_SECONDS``."""
        now = time.monotonic()
        cached = self._settings.get(workspace_id)
        if cached is None or now - cached[0] > SETTINGS_TTL_SECONDS:
            workspace = session.get(Workspace, workspace_id)
            cached = (now, dict(workspace.settings or {}) if workspace is not None else {})
            self._settings[workspace_id] = cached
        return cached[1]

    def _sender(self, session: Session, workspace_id: int) -> Any:
        """The sender with the workspace's active DKIM keys, loaded once per composer."""
        if self.dkim_secret is None:
            return self.sender
        if workspace_id not in self._senders:
            from dataclasses import replace

            from postwise.messages.keys import signing_keys

            keys = signing_keys(session, self.dkim_secret, self.sender.sending_domain)
            self._senders[workspace_id] = replace(self.sender, dkim=keys)
        return self._senders[workspace_id]

    def _row_sender(self, session: Session, row: Claimed) -> Any:
        """The workspace's sender with the row's own identity over it; a sending domain
        of its own signs with that domain's active keys (d= aligned with From)."""
        base = self._sender(session, row.workspace_id)
        own = row.data.get(ROW_SENDER)
        if not isinstance(own, dict):
            return base
        from dataclasses import replace

        values = {
            k: str(own[k])
            for k in ("from_address", "from_name", "reply_to", "sending_domain")
            if own.get(k)
        }
        domain = values.get("sending_domain")
        if domain and domain != base.sending_domain and self.dkim_secret is not None:
            cache_key = (row.workspace_id, domain)
            if cache_key not in self._domain_keys:
                from postwise.messages.keys import signing_keys

                self._domain_keys[cache_key] = signing_keys(session, self.dkim_secret, domain)
            if not self._domain_keys[cache_key]:
                raise BuildError(f"sending domain {domain} has no active DKIM key")
            return replace(base, dkim=self._domain_keys[cache_key], **values)
        return replace(base, **values)

    def _template(self, session: Session, row: Claimed) -> Any:
        from postwise.messages.templates import TemplateSource, compile_template

        inline = row.data.get(INLINE_TEMPLATE)
        if isinstance(inline, dict):
            key = repr(sorted(inline.items()))
            if key not in self._inline:
                source = TemplateSource(
                    subject=str(inline.get("subject", "")),
                    html=str(inline.get("html", "")),
                    text=str(inline.get("text", "")),
                    preheader=str(inline.get("preheader", "")),
                )
                self._inline[key] = compile_template(source)
            return self._inline[key]
        if not row.template_id:
            raise BuildError("the row names no template")
        return self.templates(session, row.template_id)

    def preload(self, session: Session, rows: Sequence[Claimed]) -> list[Any]:
        """Read the contacts, companies and stored templates of a chunk of rows in three
        queries. The session's identity map holds objects weakly: keep the returned list
        while building, and each row's ``session.get`` asks the database nothing."""
        loaded: list[Any] = []
        template_ids = {
            int(r.template_id) for r in rows if r.template_id and r.template_id.isdigit()
        }
        if template_ids:
            from postwise.storage.tables import Template

            loaded += session.scalars(select(Template).where(Template.id.in_(template_ids))).all()
        contact_ids = {r.contact_id for r in rows if r.contact_id is not None}
        if contact_ids:
            contacts = session.scalars(select(Contact).where(Contact.id.in_(contact_ids))).all()
            loaded += contacts
            company_ids = {c.company_id for c in contacts if c.company_id is not None}
            if company_ids:
                loaded += session.scalars(select(Company).where(Company.id.in_(company_ids))).all()
        return loaded

    def __call__(self, session: Session, row: Claimed) -> Built:
        if row.raw is not None:
            return prebuilt(session, row)
        from postwise.messages.pipeline import Delivery, Recipient

        try:
            template = self._template(session, row)
            contact = session.get(Contact, row.contact_id) if row.contact_id else None
            company = None
            if contact is not None and contact.company_id is not None:
                company = session.get(Company, contact.company_id)
            fields: dict[str, Any] = {}
            name = ""
            if contact is not None:
                fields = {
                    c: getattr(contact, c)
                    for c in ("email", "first_name", "last_name", "job_title", "country")
                }
                fields.update(contact.attributes or {})
                name = " ".join(p for p in (contact.first_name, contact.last_name) if p)
            recipient = Recipient(
                email=row.email,
                contact_id=row.contact_id,
                name=name,
                fields=fields,
                company={"name": company.name, "domain": company.domain} if company else None,
                tracking_consent=consent.allowed(
                    self._workspace_settings(session, row.workspace_id),
                    contact.attributes if contact is not None else None,
                    has_contact=contact is not None,
                ),
            )
            data = {k: v for k, v in row.data.items() if k not in (INLINE_TEMPLATE, ROW_SENDER)}
            delivery = Delivery(
                message_id=row.id,
                workspace_id=row.workspace_id,
                kind="marketing" if row.kind == "marketing" else "transactional",
                list_id=row.list_id,
                data=data,
                extra_headers=(("X-Postwise-Workspace", str(row.workspace_id)),),
            )
            sender = self._row_sender(session, row)
            built = self.builder.build(template, recipient, sender, delivery)
        except ValidationFailed as exc:
            raise BuildError(str(exc)) from exc
        return Built(built.mail_from, built.rcpt, built.data, built.message_id, tuple(built.links))
