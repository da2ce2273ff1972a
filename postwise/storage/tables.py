"""The schema: one declarative model per table, shared by SQLite and PostgreSQL.

Every table whose rows belong to a tenant inherits ``WorkspaceOwned``; the session in
``storage/tenancy.py`` filters and stamps those rows by workspace on its own, so a
query that forgets the filter still cannot see another workspace. Alembic migrations
in ``storage/migrations/versions`` are the source of truth for deployed schemas; this
module must match them (``tests/storage/test_migrations.py`` checks).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from postwise.core.clock import utcnow
from postwise.storage.types import JSONDoc, UTCDateTime

# SQLite only auto-increments an INTEGER PRIMARY KEY, so big ids shrink to INTEGER there.
BigID = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONDoc}


class WorkspaceOwned:
    """Marks a table whose every row belongs to one workspace."""

    @declared_attr
    def workspace_id(cls) -> Mapped[int]:
        return mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False)


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ApiKey(WorkspaceOwned, Base):
    """Management keys (kind ``secret``) and tracking write keys (kind ``write``)."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_workspace", "workspace_id"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="secret")
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class AttributeDefinition(WorkspaceOwned, Base):
    """Declares a custom attribute and its type, so values are checked on every write."""

    __tablename__ = "attribute_definitions"
    __table_args__ = (UniqueConstraint("workspace_id", "entity", "name"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    entity: Mapped[str] = mapped_column(String(16))  # contact | company
    name: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16))  # string | number | boolean | date | list
    description: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Company(WorkspaceOwned, Base):
    __tablename__ = "companies"
    __table_args__ = (
        UniqueConstraint("workspace_id", "domain"),
        Index("ix_companies_ws_industry", "workspace_id", "industry"),
        Index("ix_companies_ws_size_band", "workspace_id", "size_band"),
        Index("ix_companies_ws_country", "workspace_id", "country"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    domain: Mapped[str] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255), default=None)
    industry: Mapped[str | None] = mapped_column(String(100), default=None)
    employee_count: Mapped[int | None] = mapped_column(Integer, default=None)
    size_band: Mapped[str | None] = mapped_column(String(32), default=None)
    revenue_band: Mapped[str | None] = mapped_column(String(32), default=None)
    country: Mapped[str | None] = mapped_column(String(2), default=None)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Contact(WorkspaceOwned, Base):
    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("workspace_id", "email"),
        Index(
            "uq_contacts_ws_external_id",
            "workspace_id",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
            sqlite_where=text("external_id IS NOT NULL"),
        ),
        Index("ix_contacts_ws_company", "workspace_id", "company_id"),
        Index("ix_contacts_ws_domain", "workspace_id", "email_domain"),
        # No index on status (migration 0016): a handful of values, it only slowed writes.
        Index("ix_contacts_ws_updated", "workspace_id", "updated_at"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    email_domain: Mapped[str] = mapped_column(String(255))
    external_id: Mapped[str | None] = mapped_column(String(255), default=None)
    first_name: Mapped[str | None] = mapped_column(String(200), default=None)
    last_name: Mapped[str | None] = mapped_column(String(200), default=None)
    job_title: Mapped[str | None] = mapped_column(String(200), default=None)
    seniority: Mapped[str | None] = mapped_column(String(32), default=None)
    department: Mapped[str | None] = mapped_column(String(64), default=None)
    country: Mapped[str | None] = mapped_column(String(2), default=None)
    timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    language: Mapped[str | None] = mapped_column(String(16), default=None)
    phone: Mapped[str | None] = mapped_column(String(32), default=None)
    status: Mapped[str] = mapped_column(String(32), default="subscribed")
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    company_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("companies.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class MailingList(WorkspaceOwned, Base):
    __tablename__ = "lists"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(1000), default="")
    double_opt_in: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Consent(WorkspaceOwned, Base):
    """What a person agreed to, when, where and how; kept even after they leave the list."""

    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_ws_contact", "workspace_id", "contact_id"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    contact_id: Mapped[int] = mapped_column(BigID, ForeignKey("contacts.id", ondelete="CASCADE"))
    list_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("lists.id", ondelete="CASCADE"), default=None
    )
    source: Mapped[str] = mapped_column(String(16))  # import | api | form | admin
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    consent_text: Mapped[str | None] = mapped_column(Text, default=None)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(default=None)


class ListMembership(WorkspaceOwned, Base):
    __tablename__ = "list_memberships"
    __table_args__ = (
        Index("ix_list_memberships_ws_contact", "workspace_id", "contact_id"),
        Index("ix_list_memberships_ws_list_status", "workspace_id", "list_id", "status"),
    )

    list_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16), default="subscribed")
    consent_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("consents.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Suppression(WorkspaceOwned, Base):
    """Addresses and whole domains never to be mailed; ``address_hash`` rows outlive erasure."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("workspace_id", "kind", "value"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # address | domain | address_hash
    value: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ContactChange(WorkspaceOwned, Base):
    """The audit half of a contact's timeline (the other half is ``events``)."""

    __tablename__ = "contact_changes"
    __table_args__ = (
        Index("ix_contact_changes_ws_contact_at", "workspace_id", "contact_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    contact_id: Mapped[int] = mapped_column(BigID, ForeignKey("contacts.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))  # created | updated | subscribed | ...
    source: Mapped[str] = mapped_column(String(16))  # api | import | cli | tracking | system
    changes: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ContactChangeBatch(WorkspaceOwned, Base):
    """Contacts a CSV import created in one batch, recorded once for all of them: each
    carries ``at`` as its ``created_at``, which is how its timeline finds this entry."""

    __tablename__ = "contact_change_batches"
    __table_args__ = (Index("ix_contact_change_batches_ws_at", "workspace_id", "at"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    at: Mapped[datetime] = mapped_column()
    kind: Mapped[str] = mapped_column(String(32))  # created
    source: Mapped[str] = mapped_column(String(16))  # import
    contacts: Mapped[int] = mapped_column(Integer)


class Event(WorkspaceOwned, Base):
    """Something a person (or a machine on their behalf) did: page, track, email events."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_ws_contact_at", "workspace_id", "contact_id", "occurred_at"),
        Index("ix_events_ws_name_at", "workspace_id", "name", "occurred_at"),
        Index("ix_events_ws_anonymous", "workspace_id", "anonymous_id"),
        Index("ix_events_ws_user", "workspace_id", "user_id"),
        Index(
            "uq_events_ws_message_id",
            "workspace_id",
            "message_id",
            unique=True,
            postgresql_where=text("message_id IS NOT NULL"),
            sqlite_where=text("message_id IS NOT NULL"),
        ),
        # Segments: one name's events per contact (migration 0010, docs/segments.md).
        Index("ix_events_ws_name_contact_at", "workspace_id", "name", "contact_id", "occurred_at"),
        # Segments: human opens and clicks; the predicate is the compiler's human-only test.
        Index(
            "ix_events_ws_human_engagement",
            "workspace_id",
            "name",
            "occurred_at",
            "contact_id",
            postgresql_where=text(
                "type = 'email' AND name IN ('Email Opened', 'Email Clicked') "
                "AND NOT coalesce((properties -> 'machine') = CAST('true' AS JSONB), false)"
            ),
            sqlite_where=text(
                "type = 'email' AND name IN ('Email Opened', 'Email Clicked') "
                "AND coalesce(json_type(properties, '$.machine'), '') <> 'true'"
            ),
        ),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("contacts.id", ondelete="CASCADE"), default=None
    )
    anonymous_id: Mapped[str | None] = mapped_column(String(255), default=None)
    type: Mapped[str] = mapped_column(String(16))  # track | page | screen | identify | group
    name: Mapped[str] = mapped_column(String(255))
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    message_id: Mapped[str | None] = mapped_column(String(255), default=None)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Segment userId as sent (before a contact exists for it), and the client's clock.
    user_id: Mapped[str | None] = mapped_column(String(255), default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    original_timestamp: Mapped[datetime | None] = mapped_column(default=None)


class Identity(WorkspaceOwned, Base):
    """Which contact an anonymous visitor id (or an aliased id) turned out to be.

    A row may exist before its contact does (``identify`` with a userId but no email);
    ``merged_at`` is set when the id's events were reassigned to ``contact_id``.
    """

    __tablename__ = "identities"
    __table_args__ = (
        UniqueConstraint("workspace_id", "anonymous_id"),
        Index("ix_identities_ws_user", "workspace_id", "user_id"),
        Index("ix_identities_ws_contact", "workspace_id", "contact_id"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    anonymous_id: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str | None] = mapped_column(String(255), default=None)
    contact_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("contacts.id", ondelete="CASCADE"), default=None
    )
    source: Mapped[str] = mapped_column(String(16))  # identify | alias
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    merged_at: Mapped[datetime | None] = mapped_column(default=None)


class Job(Base):
    """A unit of background work; claimed with FOR UPDATE SKIP LOCKED under a lease.

    Not ``WorkspaceOwned``: workers claim across all workspaces. ``workspace_id`` is
    carried for the handler and for operators.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_claim", "queue", "status", "run_at"),
        Index("ix_jobs_lease", "status", "lease_expires_at"),
        Index(
            "uq_jobs_dedupe_key",
            "dedupe_key",
            unique=True,
            postgresql_where=text("dedupe_key IS NOT NULL"),
            sqlite_where=text("dedupe_key IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    queue: Mapped[str] = mapped_column(String(64), default="default")
    task: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    workspace_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("workspaces.id", ondelete="CASCADE"), default=None
    )
    status: Mapped[str] = mapped_column(String(16), default="queued")
    priority: Mapped[int] = mapped_column(Integer, default=100)
    run_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    locked_by: Mapped[str | None] = mapped_column(String(128), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    dedupe_key: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class CapturedMessage(Base):
    """Mail caught by the local capture SMTP server of the embedded mode."""

    __tablename__ = "captured_messages"
    __table_args__ = (Index("ix_captured_messages_ws", "workspace_id", "id"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    workspace_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("workspaces.id", ondelete="CASCADE"), default=None
    )
    mail_from: Mapped[str] = mapped_column(String(320))
    rcpt_to: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    subject: Mapped[str] = mapped_column(String(1000), default="")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Erasure(WorkspaceOwned, Base):
    """Proof that a person was erased: when, at whose request, how many rows went.

    Holds no personal data by design. ``former_contact_ids`` are plain ids, not foreign
    keys (the contacts are gone); ``deleted`` and ``redacted`` count rows per table.
    """

    __tablename__ = "erasures"
    __table_args__ = (Index("ix_erasures_ws_erased_at", "workspace_id", "erased_at"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    former_contact_ids: Mapped[list[int]] = mapped_column(JSONDoc, default=list)
    requested_by: Mapped[str] = mapped_column(String(200))
    erased_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted: Mapped[dict[str, Any]] = mapped_column(default=dict)
    redacted: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ImportRun(WorkspaceOwned, Base):
    """One CSV import (``contacts/importer.py``): what was asked, how far it got, what it did.

    ``counts`` and ``bytes_read`` are saved in the transaction of each batch, so they
    always match what is stored; ``report_path`` names the rejected-rows CSV, if any.
    """

    __tablename__ = "imports"
    __table_args__ = (Index("ix_imports_ws_created", "workspace_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|done|failed
    source: Mapped[str] = mapped_column(String(16))  # api | cli
    filename: Mapped[str] = mapped_column(String(255), default="")
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    bytes_total: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_read: Mapped[int] = mapped_column(BigInteger, default=0)
    file_path: Mapped[str | None] = mapped_column(String(1000), default=None)
    report_path: Mapped[str | None] = mapped_column(String(1000), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class OutboxMessage(WorkspaceOwned, Base):
    """One message to one recipient on its way out (``delivery/outbox.py``, docs/delivery.md).

    Workers claim rows directly (``FOR UPDATE SKIP LOCKED``, a lease and the fence
    ``(id, locked_by, attempts)``), so the row is both the work item and its record.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("workspace_id", "idempotency_key"),
        Index("ix_outbox_due", "status", "next_attempt_at"),
        # What a claim reads, in its order (migration 0017): no sort of the due backlog.
        Index(
            "ix_outbox_claim",
            "next_attempt_at",
            "id",
            postgresql_where=text("status IN ('queued', 'deferred')"),
            sqlite_where=text("status IN ('queued', 'deferred')"),
        ),
        Index("ix_outbox_lease", "status", "lease_expires_at"),
        Index("ix_outbox_ws_contact", "workspace_id", "contact_id"),
        Index("ix_outbox_ws_status", "workspace_id", "status"),
        # Bounces without a VERP token are tied by the returned Message-ID (migration 0008).
        Index("ix_outbox_message_id", "message_id"),
        # Pause, resume and cancel of a campaign touch its unsent rows (migration 0012).
        Index(
            "ix_outbox_ws_campaign_status",
            "workspace_id",
            "campaign_key",
            "status",
            postgresql_where=text("campaign_key IS NOT NULL"),
            sqlite_where=text("campaign_key IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("contacts.id", ondelete="SET NULL"), default=None
    )
    email: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(16))  # transactional | marketing
    template_id: Mapped[str | None] = mapped_column(String(200), default=None)
    template_version: Mapped[int | None] = mapped_column(Integer, default=None)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    list_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("lists.id", ondelete="SET NULL"), default=None
    )
    campaign_key: Mapped[str | None] = mapped_column(String(200), default=None)
    workflow_key: Mapped[str | None] = mapped_column(String(200), default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    raw: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    mail_from: Mapped[str | None] = mapped_column(String(320), default=None)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_by: Mapped[str | None] = mapped_column(String(128), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    last_reply: Mapped[str | None] = mapped_column(Text, default=None)
    reason: Mapped[str | None] = mapped_column(String(64), default=None)
    message_id: Mapped[str | None] = mapped_column(String(998), default=None)
    transport: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    first_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    # Original URLs in link-index order: a click token's index resolves here.
    links: Mapped[list[str] | None] = mapped_column(JSONDoc, default=None)


class Template(WorkspaceOwned, Base):
    """A message template (see docs/messages.md); ``version`` counts saves."""

    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="marketing")  # marketing|transactional
    subject: Mapped[str] = mapped_column(Text)
    preheader: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    mjml: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DkimKeyRecord(WorkspaceOwned, Base):
    """A DKIM signing key; the private key is AES-GCM encrypted (``messages/keys.py``)."""

    __tablename__ = "dkim_keys"
    __table_args__ = (UniqueConstraint("workspace_id", "domain", "selector"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    domain: Mapped[str] = mapped_column(String(255))
    selector: Mapped[str] = mapped_column(String(63))
    algorithm: Mapped[str] = mapped_column(String(16))  # rsa-sha256 | ed25519-sha256
    private_key: Mapped[bytes] = mapped_column(LargeBinary)  # nonce || AES-GCM ciphertext
    dns_record: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- Bounces and complaints (docs/bounces.md: intake, policy, filter blocks) ---------------


class InboundMessage(Base):
    """A message that came back (DSN, complaint, auto-reply, webhook event), kept as received.

    Not ``WorkspaceOwned``: a message is stored before (and even when never) it is tied to
    a workspace. ``raw`` is cut at ``POSTWISE_BOUNCE_RAW_LIMIT`` bytes (``raw_size`` says how
    big it was), so a hostile sender cannot fill the database. ``dedupe_key`` makes a
    webhook retry or a re-read maildir file land once.
    """

    __tablename__ = "inbound_messages"
    __table_args__ = (
        Index("ix_inbound_messages_ws_received", "workspace_id", "received_at"),
        Index(
            "uq_inbound_messages_dedupe_key",
            "dedupe_key",
            unique=True,
            postgresql_where=text("dedupe_key IS NOT NULL"),
            sqlite_where=text("dedupe_key IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    workspace_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("workspaces.id", ondelete="CASCADE"), default=None
    )
    source: Mapped[str] = mapped_column(String(16))  # smtp|imap|maildir|http|ses|sendgrid|send_time
    kind: Mapped[str] = mapped_column(String(16))  # report.Kind value
    parsed: Mapped[bool] = mapped_column(Boolean, default=True)
    unparsed_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    mail_from: Mapped[str | None] = mapped_column(String(320), default=None)
    rcpt_to: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    # The addresses the message reports on: how erasure finds (and deletes) it.
    addresses: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    subject: Mapped[str | None] = mapped_column(String(1000), default=None)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    raw_size: Mapped[int] = mapped_column(BigInteger, default=0)
    dedupe_key: Mapped[str | None] = mapped_column(String(255), default=None)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class BounceRecord(WorkspaceOwned, Base):
    """One recipient's bounce or complaint, tied to the outbox row when it could be.

    ``verdict`` is what the policy did: ``suppressed``, ``soft_counted``,
    ``kept_filter_block``, ``ignored`` (e.g. a soft bounce under the threshold of a
    message that was never ours).
    """

    __tablename__ = "bounce_records"
    __table_args__ = (
        Index("ix_bounce_records_ws_occurred", "workspace_id", "occurred_at"),
        Index("ix_bounce_records_ws_domain_occurred", "workspace_id", "domain", "occurred_at"),
        Index("ix_bounce_records_ws_email_occurred", "workspace_id", "email", "occurred_at"),
        Index("ix_bounce_records_ws_campaign", "workspace_id", "campaign_key"),
        Index(
            "uq_bounce_records_ws_dedupe_key",
            "workspace_id",
            "dedupe_key",
            unique=True,
            postgresql_where=text("dedupe_key IS NOT NULL"),
            sqlite_where=text("dedupe_key IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    inbound_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("inbound_messages.id", ondelete="SET NULL"), default=None
    )
    outbox_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("outbox.id", ondelete="SET NULL"), default=None
    )
    contact_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("contacts.id", ondelete="SET NULL"), default=None
    )
    email: Mapped[str] = mapped_column(String(320))
    domain: Mapped[str] = mapped_column(String(255))
    campaign_key: Mapped[str | None] = mapped_column(String(200), default=None)
    source: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))  # bounce | complaint
    reason: Mapped[str] = mapped_column(String(32))
    hard: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str | None] = mapped_column(String(16), default=None)
    reply_code: Mapped[int | None] = mapped_column(Integer, default=None)
    diagnostic: Mapped[str | None] = mapped_column(Text, default=None)
    feedback_type: Mapped[str | None] = mapped_column(String(32), default=None)
    filter_wording: Mapped[bool] = mapped_column(Boolean, default=False)
    verdict: Mapped[str] = mapped_column(String(32))
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dedupe_key: Mapped[str | None] = mapped_column(String(255), default=None)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DomainBlock(WorkspaceOwned, Base):
    """A recipient domain whose gateway is suspected of filtering our mail as "unknown user".

    One row per domain; ``status`` is ``active`` or ``cleared``. While active and before
    ``slow_until``, the deliverer paces the domain at ``per_minute`` at most.
    """

    __tablename__ = "domain_blocks"
    __table_args__ = (
        UniqueConstraint("workspace_id", "domain"),
        Index("ix_domain_blocks_status_slow", "status", "slow_until"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    domain: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="active")
    since: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    campaign_key: Mapped[str | None] = mapped_column(String(200), default=None)
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    per_minute: Mapped[float | None] = mapped_column(Float, default=None)
    slow_until: Mapped[datetime | None] = mapped_column(default=None)
    cleared_at: Mapped[datetime | None] = mapped_column(default=None)


class BounceAlert(WorkspaceOwned, Base):
    """Something a person should look at: what was seen and what to do about it."""

    __tablename__ = "bounce_alerts"
    __table_args__ = (Index("ix_bounce_alerts_ws_created", "workspace_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # filter_block | ...
    domain: Mapped[str | None] = mapped_column(String(255), default=None)
    campaign_key: Mapped[str | None] = mapped_column(String(200), default=None)
    message: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(default=None)
    acknowledged_by: Mapped[str | None] = mapped_column(String(200), default=None)


class SuppressionEvent(WorkspaceOwned, Base):
    """Audit of suppression entries added or lifted by bounce policy or a person.

    ``suppression_id`` is a plain id: a lifted entry is deleted, its history stays.
    """

    __tablename__ = "suppression_events"
    __table_args__ = (
        Index("ix_suppression_events_ws_value", "workspace_id", "value"),
        Index("ix_suppression_events_ws_at", "workspace_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    suppression_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    action: Mapped[str] = mapped_column(String(16))  # added | lifted
    entry_kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(String(500), default="")
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Segment(WorkspaceOwned, Base):
    """A saved segment definition (docs/segments.md); ``version`` counts saves.

    ``member_count`` and ``refreshed_at`` describe the last full refresh, kept current by
    the incremental updates in between, so lists of segments never count members.
    """

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(1000), default="")
    definition: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | paused
    member_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    refreshed_at: Mapped[datetime | None] = mapped_column(default=None)


class SegmentMembership(WorkspaceOwned, Base):
    """One stay of a contact in a segment: ``exited_at`` is NULL while they are a member.

    History is kept: a contact who leaves and comes back gets a new row. The partial
    unique index allows one open stay per (segment, contact) and serves "current members"
    in contact-id order (member pages, refresh diffs).
    """

    __tablename__ = "segment_memberships"
    __table_args__ = (
        Index(
            "uq_segment_memberships_current",
            "segment_id",
            "contact_id",
            unique=True,
            postgresql_where=text("exited_at IS NULL"),
            sqlite_where=text("exited_at IS NULL"),
        ),
        Index("ix_segment_memberships_ws_contact", "workspace_id", "contact_id", "entered_at"),
        Index("ix_segment_memberships_segment_entered", "segment_id", "entered_at"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    segment_id: Mapped[int] = mapped_column(BigID, ForeignKey("segments.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(BigID, ForeignKey("contacts.id", ondelete="CASCADE"))
    entered_at: Mapped[datetime] = mapped_column(default=utcnow)
    exited_at: Mapped[datetime | None] = mapped_column(default=None)


class Workflow(WorkspaceOwned, Base):
    """An automation workflow (docs/workflows.md): ``version`` is the current definition.

    ``status`` ``paused`` holds wake-ups (they stay due and run on resume); ``paused_reason``
    says why when the runtime paused it (a deleted template or list).
    """

    __tablename__ = "workflows"
    __table_args__ = (UniqueConstraint("workspace_id", "key"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    key: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | paused
    paused_reason: Mapped[str | None] = mapped_column(Text, default=None)
    version: Mapped[int] = mapped_column(Integer, default=1)
    playbook: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WorkflowVersion(WorkspaceOwned, Base):
    """Every saved definition: running enrollments finish on the version they started on."""

    __tablename__ = "workflow_versions"
    __table_args__ = (UniqueConstraint("workflow_id", "version"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    workflow_id: Mapped[int] = mapped_column(BigID, ForeignKey("workflows.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Enrollment(WorkspaceOwned, Base):
    """One contact's journey through one workflow version; ``state`` is the engine's State.

    Workers claim due rows (``ix_enrollments_due``) with ``FOR UPDATE SKIP LOCKED`` and
    store the new state with the step's side effects in one transaction, so a step runs
    once or not at all. The partial unique index allows one active journey per contact
    and workflow, whichever trigger races to enroll.
    """

    __tablename__ = "enrollments"
    __table_args__ = (
        Index("ix_enrollments_due", "status", "next_wake_at"),
        Index("ix_enrollments_ws_contact", "workspace_id", "contact_id", "workflow_id"),
        Index("ix_enrollments_workflow_status", "workflow_id", "status"),
        Index(
            "uq_enrollments_active",
            "workflow_id",
            "contact_id",
            unique=True,
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    workflow_id: Mapped[int] = mapped_column(BigID, ForeignKey("workflows.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    contact_id: Mapped[int] = mapped_column(BigID, ForeignKey("contacts.id", ondelete="CASCADE"))
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active|completed|exited
    exit_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    next_wake_at: Mapped[datetime | None] = mapped_column(default=None)
    enrolled_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    exited_at: Mapped[datetime | None] = mapped_column(default=None)


class EnrollmentStep(WorkspaceOwned, Base):
    """The history of a journey, one row per step taken (history API, per-step metrics)."""

    __tablename__ = "enrollment_steps"
    __table_args__ = (
        Index("ix_enrollment_steps_enrollment", "enrollment_id", "id"),
        Index("ix_enrollment_steps_workflow_step", "workflow_id", "step"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("enrollments.id", ondelete="CASCADE")
    )
    workflow_id: Mapped[int] = mapped_column(BigID, ForeignKey("workflows.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    outcome: Mapped[str] = mapped_column(String(200))
    # What the step did: {"send": template, "key": ..., "outbox_id": ...} and the like.
    command: Mapped[dict[str, Any]] = mapped_column(default=dict)


class WebhookDelivery(WorkspaceOwned, Base):
    """A workflow webhook call and its retries; ``key`` (the step's command key) is unique.

    Sent by its own job (``workflows/dispatch.py``) so a failing or hanging target delays
    nothing but itself.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("workspace_id", "key"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_workflow", "workflow_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    workflow_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("workflows.id", ondelete="SET NULL"), default=None
    )
    enrollment_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("enrollments.id", ondelete="SET NULL"), default=None
    )
    key: Mapped[str] = mapped_column(String(255))
    step: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str | None] = mapped_column(String(200), default=None)
    body: Mapped[str] = mapped_column(Text)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    backoff: Mapped[float] = mapped_column(Float, default=30.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|failed
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class WorkflowRoutedEvent(WorkspaceOwned, Base):
    """An event the ``workflows.route`` job has handed to workflows (migration 0014).

    The job claims events by inserting their ids (``ON CONFLICT DO NOTHING``), so each
    event of a batch is routed once, whichever route job sees it first; rows go with the
    event (retention, erasure).
    """

    __tablename__ = "workflow_routed_events"

    event_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("events.id", ondelete="CASCADE"), primary_key=True
    )
    routed_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- Campaigns (docs/campaigns.md) ---------------------------------------------------------


class Campaign(WorkspaceOwned, Base):
    """A one-off send to an audience: what, to whom, when, how fast, and what counts as success.

    ``status`` walks draft -> scheduled -> sending -> sent, with paused and cancelled on the
    side (``campaigns/lifecycle.py`` holds the legal moves). ``audience``, ``schedule``,
    ``ab``, ``guardrails`` and ``utm`` are JSON specs validated by ``campaigns/specs.py``;
    ``ab_result`` is the decision of the A/B test once its job ran.
    """

    __tablename__ = "campaigns"
    __table_args__ = (
        UniqueConstraint("workspace_id", "key"),
        Index("ix_campaigns_status_send_at", "status", "send_at"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    key: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    paused_reason: Mapped[str | None] = mapped_column(Text, default=None)
    template_id: Mapped[str | None] = mapped_column(String(200), default=None)
    template_version: Mapped[int | None] = mapped_column(Integer, default=None)
    from_name: Mapped[str | None] = mapped_column(String(200), default=None)
    from_address: Mapped[str | None] = mapped_column(String(320), default=None)
    reply_to: Mapped[str | None] = mapped_column(String(320), default=None)
    sending_domain: Mapped[str | None] = mapped_column(String(255), default=None)
    utm: Mapped[dict[str, Any]] = mapped_column(default=dict)
    audience: Mapped[dict[str, Any]] = mapped_column(default=dict)
    schedule: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"mode": now|at|local, ...}
    send_at: Mapped[datetime | None] = mapped_column(default=None)
    pace_per_minute: Mapped[float | None] = mapped_column(Float, default=None)
    goal_event: Mapped[str | None] = mapped_column(String(200), default=None)
    attribution_window_hours: Mapped[int] = mapped_column(Integer, default=168)
    revenue_property: Mapped[str | None] = mapped_column(String(200), default=None)
    credit: Mapped[str] = mapped_column(String(16), default="click")  # click | open
    ab: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ab_result: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc, default=None)
    winner_variant: Mapped[str | None] = mapped_column(String(16), default=None)
    guardrails: Mapped[dict[str, Any]] = mapped_column(default=dict)
    recipient_count: Mapped[int] = mapped_column(Integer, default=0)
    # Fan-out progress: the last contact id snapshotted (batches resume after it).
    fanout_cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    test_send_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    scheduled_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    paused_at: Mapped[datetime | None] = mapped_column(default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)


class CampaignVariant(WorkspaceOwned, Base):
    """One arm of an A/B/n test; a NULL field means "the campaign's own"."""

    __tablename__ = "campaign_variants"
    __table_args__ = (UniqueConstraint("campaign_id", "key"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(BigID, ForeignKey("campaigns.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str | None] = mapped_column(Text, default=None)
    from_name: Mapped[str | None] = mapped_column(String(200), default=None)
    preheader: Mapped[str | None] = mapped_column(Text, default=None)
    template_id: Mapped[str | None] = mapped_column(String(200), default=None)
    template_version: Mapped[int | None] = mapped_column(Integer, default=None)
    weight: Mapped[float] = mapped_column(Float, default=1.0)


class CampaignRecipient(WorkspaceOwned, Base):
    """The audience snapshot taken at send time: who, through which segment or list.

    Unique per (campaign, contact) so a fan-out re-run after a crash adds nobody twice.
    ``phase`` is ``all`` (no test), ``test`` (in an A/B arm) or ``rest`` (waits for the
    winner); ``outbox_id`` is a plain id (the outbox row may be pruned).
    """

    __tablename__ = "campaign_recipients"
    __table_args__ = (
        UniqueConstraint("campaign_id", "contact_id"),
        Index("ix_campaign_recipients_ws_contact", "workspace_id", "contact_id"),
        Index("ix_campaign_recipients_campaign_phase", "campaign_id", "phase", "variant"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(BigID, ForeignKey("campaigns.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(BigID, ForeignKey("contacts.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    domain: Mapped[str] = mapped_column(String(255))
    company_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    source_kind: Mapped[str] = mapped_column(String(8))  # segment | list
    source_id: Mapped[int] = mapped_column(BigInteger)
    phase: Mapped[str] = mapped_column(String(8), default="all")  # all | test | rest
    variant: Mapped[str | None] = mapped_column(String(16), default=None)
    outbox_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    scheduled_for: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CampaignAttribution(WorkspaceOwned, Base):
    """A goal event credited to the last human touch of a campaign message before it.

    One row per conversion event (unique), so a re-run of attribution never counts twice.
    """

    __tablename__ = "campaign_attributions"
    __table_args__ = (
        UniqueConstraint("workspace_id", "event_id"),
        Index("ix_campaign_attributions_campaign", "campaign_id", "converted_at"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(BigID, ForeignKey("campaigns.id", ondelete="CASCADE"))
    campaign_key: Mapped[str] = mapped_column(String(200))
    contact_id: Mapped[int] = mapped_column(BigID, ForeignKey("contacts.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(BigInteger)
    goal_event: Mapped[str] = mapped_column(String(200))
    touch: Mapped[str] = mapped_column(String(16))  # click | open
    touch_event_id: Mapped[int] = mapped_column(BigInteger)
    touch_at: Mapped[datetime] = mapped_column()
    converted_at: Mapped[datetime] = mapped_column()
    variant: Mapped[str | None] = mapped_column(String(16), default=None)
    revenue: Mapped[float | None] = mapped_column(Float, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- Analytics (migration 0013, docs/analytics.md) ---------------------------------------

ROLLUP_COUNTERS = (
    "sent",
    "delivered",
    "deferred",
    "bounced_hard",
    "bounced_soft",
    "filter_blocked",
    "opens_human",
    "opens_machine",
    "unique_opens_human",
    "unique_opens_machine",
    "clicks_human",
    "clicks_machine",
    "unique_clicks_human",
    "unique_clicks_machine",
    "conversions",
    "unsubscribes",
    "complaints",
)


class AnalyticsRollup(WorkspaceOwned, Base):
    """Hourly counters per (campaign, dimension kind, dimension id): what reports read.

    ``campaign_key`` is '' for rows not tied to a campaign (workflow mail), so a campaign's
    domain table and the workspace-wide domain table are the same kind of row.
    """

    __tablename__ = "analytics_rollups"
    __table_args__ = (
        UniqueConstraint(
            "workspace_id",
            "campaign_key",
            "dimension",
            "dimension_id",
            "bucket",
            name="uq_analytics_rollups_key",
        ),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    campaign_key: Mapped[str] = mapped_column(String(200), default="")
    dimension: Mapped[str] = mapped_column(String(16))  # campaign|variant|domain|company|...
    dimension_id: Mapped[str] = mapped_column(String(255))
    bucket: Mapped[datetime] = mapped_column()  # the hour, UTC
    sent: Mapped[int] = mapped_column(BigInteger, default=0)
    delivered: Mapped[int] = mapped_column(BigInteger, default=0)
    deferred: Mapped[int] = mapped_column(BigInteger, default=0)
    bounced_hard: Mapped[int] = mapped_column(BigInteger, default=0)
    bounced_soft: Mapped[int] = mapped_column(BigInteger, default=0)
    filter_blocked: Mapped[int] = mapped_column(BigInteger, default=0)
    opens_human: Mapped[int] = mapped_column(BigInteger, default=0)
    opens_machine: Mapped[int] = mapped_column(BigInteger, default=0)
    unique_opens_human: Mapped[int] = mapped_column(BigInteger, default=0)
    unique_opens_machine: Mapped[int] = mapped_column(BigInteger, default=0)
    clicks_human: Mapped[int] = mapped_column(BigInteger, default=0)
    clicks_machine: Mapped[int] = mapped_column(BigInteger, default=0)
    unique_clicks_human: Mapped[int] = mapped_column(BigInteger, default=0)
    unique_clicks_machine: Mapped[int] = mapped_column(BigInteger, default=0)
    conversions: Mapped[int] = mapped_column(BigInteger, default=0)
    revenue: Mapped[float] = mapped_column(Float, default=0.0)
    unsubscribes: Mapped[int] = mapped_column(BigInteger, default=0)
    complaints: Mapped[int] = mapped_column(BigInteger, default=0)


class AnalyticsFirstSeen(WorkspaceOwned, Base):
    """The first open/click of a contact per campaign and kind: exact, incremental uniques."""

    __tablename__ = "analytics_first_seen"
    __table_args__ = (
        UniqueConstraint(
            "workspace_id", "campaign_key", "contact_id", "kind", name="uq_analytics_first_seen_key"
        ),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    campaign_key: Mapped[str] = mapped_column(String(200))
    contact_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))  # open_human|open_machine|click_human|...
    event_id: Mapped[int] = mapped_column(BigInteger)
    seen_at: Mapped[datetime] = mapped_column()


class AnalyticsWatermark(WorkspaceOwned, Base):
    """How far the rollup has read the events: every id <= ``last_event_id`` is counted."""

    __tablename__ = "analytics_watermarks"
    __table_args__ = (UniqueConstraint("workspace_id"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_received_at: Mapped[datetime | None] = mapped_column(default=None)
    events_rolled: Mapped[int] = mapped_column(BigInteger, default=0)
    # Conversions are folded from campaign_attributions by their own id watermark.
    last_attribution_id: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# The rollup finds an event's recipient (variant, domain, source) by its outbox id.
Index(
    "ix_campaign_recipients_ws_outbox",
    CampaignRecipient.workspace_id,
    CampaignRecipient.outbox_id,
)


class ContactEngagement(WorkspaceOwned, Base):
    """A contact's decayed engagement score as of ``scored_at`` (docs/analytics.md)."""

    __tablename__ = "contact_engagement"
    __table_args__ = (
        UniqueConstraint("workspace_id", "contact_id"),
        Index("ix_contact_engagement_ws_score", "workspace_id", "score"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    contact_id: Mapped[int] = mapped_column(BigID, ForeignKey("contacts.id", ondelete="CASCADE"))
    score: Mapped[float] = mapped_column(Float, default=0.0)
    scored_at: Mapped[datetime] = mapped_column(default=utcnow)


class AnalyticsUplift(WorkspaceOwned, Base):
    """The last computed CLTV uplift for one (event, revenue property, window) (migration
    0015, docs/analytics.md): reports read this row instead of scanning events."""

    __tablename__ = "analytics_uplift"
    __table_args__ = (
        UniqueConstraint(
            "workspace_id",
            "event",
            "revenue_property",
            "window_days",
            name="uq_analytics_uplift_params",
        ),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    event: Mapped[str] = mapped_column(String(255))
    revenue_property: Mapped[str] = mapped_column(String(255))
    window_days: Mapped[int] = mapped_column(Integer)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
