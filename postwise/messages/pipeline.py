"""Building one message: (template, recipient, sender, delivery) -> signed bytes.

The whole pipeline, in order (each stage is one function in its own module and takes
and returns the ``Draft``):

    personalize  -> the render context for this contact        personalize.py
    render       -> subject, preheader, HTML and text           render.py
    footer       -> postal address + unsubscribe link           footer.py
    links        -> click tracking, UTM, open pixel             links.py
    headers      -> From/To/Message-ID/List-Unsubscribe/...     headers.py
    mime         -> RFC 5322 bytes, quoted-printable, CRLF      mime.py
    dkim         -> DKIM-Signature (RSA and/or Ed25519)         dkim.py

``MessageBuilder`` holds what is loaded once per worker (token key, link rewriter, clock)
and is what delivery calls. Nothing here touches the network or the database.
See docs/messages.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from postwise.core.clock import utcnow
from postwise.core.errors import ValidationFailed
from postwise.messages.templates import CompiledTemplate
from postwise.tracking.tokens import TokenKind, TokenSigner

MessageKind = Literal["marketing", "transactional"]


@dataclass(frozen=True)
class DkimKey:
    """A loaded private key; load once per worker (``dkim.load_key``), reuse for every message."""

    domain: str
    selector: str
    algorithm: Literal["rsa-sha256", "ed25519-sha256"]
    private_key: Any  # cryptography RSAPrivateKey or Ed25519PrivateKey


@dataclass(frozen=True)
class Sender:
    """Who sends, and the domains and keys that vouch for it."""

    from_address: str
    sending_domain: str  # Message-ID right-hand side; should be the DKIM d= domain
    bounce_domain: str  # VERP return path and the unsubscribe mailto
    base_url: str  # public https origin of /c/, /o/, /u/ (no trailing slash needed)
    postal_address: str = ""  # required for marketing mail (footer)
    from_name: str = ""
    reply_to: str | None = None
    sender_id: str = "postwise"  # Feedback-ID's last field (a stable sender id)
    list_id: str | None = None  # List-Id value, e.g. "Acme news <news.acme.example>"
    dkim: tuple[DkimKey, ...] = ()
    workspace_name: str = ""


@dataclass(frozen=True)
class Recipient:
    """One contact as the template sees it."""

    email: str
    contact_id: int | None = None
    name: str = ""  # display name in To:
    fields: Mapping[str, Any] = field(default_factory=dict)  # contact fields + attributes
    company: Mapping[str, Any] | None = None
    tracking_consent: bool = False  # no click/open tracking without it


_CID = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]{1,100}@[A-Za-z0-9.-]{1,100}")
_IMAGE_TYPE = re.compile(r"image/[a-z0-9][a-z0-9.+-]{0,60}")


@dataclass(frozen=True)
class InlineImage:
    """An image the HTML shows as ``<img src="cid:{cid}">`` (multipart/related)."""

    cid: str  # e.g. "logo@acme.example"
    content_type: str  # image/png, image/jpeg, ...
    data: bytes
    filename: str = ""

    def __post_init__(self) -> None:
        if not _CID.fullmatch(self.cid):
            raise ValidationFailed(
                "An inline image's cid looks like an address: logo@acme.example.",
                code="invalid_cid",
                field="cid",
            )
        if not _IMAGE_TYPE.fullmatch(self.content_type):
            raise ValidationFailed(
                "content_type must be image/...", code="invalid_content_type", field="content_type"
            )
        if not re.fullmatch(r"[A-Za-z0-9._ -]{0,100}", self.filename):
            raise ValidationFailed(
                "A file name of letters, digits, '.', '_', '-' and spaces.",
                code="invalid_filename",
                field="filename",
            )


@dataclass(frozen=True)
class Delivery:
    """This send: which outbox row, why, and the data the caller gave."""

    message_id: int  # the outbox row id; every token and the Message-ID derive from it
    workspace_id: int
    kind: MessageKind = "marketing"
    campaign: str | None = None  # Feedback-ID campaign field and utm_campaign
    list_id: int | None = None  # the list unsubscribed from by the one-click link
    utm: Mapping[str, str] | None = None  # e.g. {"utm_source": "postwise", ...}
    data: Mapping[str, Any] = field(default_factory=dict)  # event properties, API data
    extra_headers: tuple[tuple[str, str], ...] = ()  # e.g. X-Postwise-Workspace
    # The open pixel; None: marketing mail only (a receipt's opens are nobody's business,
    # and an image in a short message costs spam score: SpamAssassin's HTML_IMAGE_ONLY_*).
    track_opens: bool | None = None
    inline_images: tuple[InlineImage, ...] = ()


@dataclass(frozen=True)
class BuiltMessage:
    """What a transport needs: envelope and the exact bytes to send."""

    message_id: str  # the Message-ID header value, with angle brackets
    mail_from: str  # VERP return path bounces+TOKEN@bounce-domain
    rcpt: str  # the envelope recipient (IDN domain in punycode)
    data: bytes  # CRLF line endings, not dot-stuffed
    links: list[str]  # original URLs in link-index order (index i -> click token i)


class LinkRewriter(Protocol):
    """Maps (message id, link index, original url) to the URL put in the message."""

    def __call__(self, message_id: int, link_index: int, url: str) -> str: ...


class SignedClickRewriter:
    """``{base_url}/c/{token}`` with a token naming the message and the link index."""

    def __init__(self, base_url: str, tokens: TokenSigner) -> None:
        self._base = base_url.rstrip("/")
        self._tokens = tokens

    def __call__(self, message_id: int, link_index: int, url: str) -> str:
        return f"{self._base}/c/{self._tokens.sign(TokenKind.CLICK, message_id, link_index)}"


@dataclass(slots=True)
class Draft:
    """The message as it moves through the stages."""

    template: CompiledTemplate
    recipient: Recipient
    sender: Sender
    delivery: Delivery
    tokens: TokenSigner
    rewriter: LinkRewriter | None
    now: datetime
    context: dict[str, Any] = field(default_factory=dict)
    unsubscribe_url: str = ""
    unsubscribe_mailto: str = ""
    subject: str = ""
    preheader: str = ""
    html: str = ""
    text: str = ""
    links: list[str] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)  # encoded, ASCII
    message_id: str = ""
    mail_from: str = ""
    rcpt: str = ""
    data: bytes = b""


Stage = Callable[[Draft], Draft]


def _stages() -> tuple[Stage, ...]:
    from postwise.messages import dkim, footer, headers, links, mime, personalize, render

    return (
        personalize.personalize,
        render.render,
        footer.add_footer,
        links.rewrite_links,
        headers.add_headers,
        mime.assemble,
        dkim.sign,
    )


class MessageBuilder:
    """Builds messages; one per worker, shared by every message it sends."""

    def __init__(
        self,
        tokens: TokenSigner,
        *,
        rewriter: LinkRewriter | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.tokens = tokens
        self.rewriter = rewriter
        self.clock = clock
        self.stages = _stages()

    def build(
        self,
        template: CompiledTemplate,
        recipient: Recipient,
        sender: Sender,
        delivery: Delivery,
    ) -> BuiltMessage:
        """Raises ValidationFailed (template errors, bad addresses): a permanent failure."""
        draft = self.run(template, recipient, sender, delivery)
        return BuiltMessage(
            message_id=draft.message_id,
            mail_from=draft.mail_from,
            rcpt=draft.rcpt,
            data=draft.data,
            links=draft.links,
        )

    def run(
        self,
        template: CompiledTemplate,
        recipient: Recipient,
        sender: Sender,
        delivery: Delivery,
    ) -> Draft:
        """Every stage, keeping the intermediate parts (previews show them)."""
        draft = Draft(
            template=template,
            recipient=recipient,
            sender=sender,
            delivery=delivery,
            tokens=self.tokens,
            rewriter=self.rewriter
            if self.rewriter is not None
            else SignedClickRewriter(sender.base_url, self.tokens),
            now=self.clock(),
        )
        for stage in self.stages:
            draft = stage(draft)
        return draft


def build_message(
    template: CompiledTemplate,
    recipient: Recipient,
    sender: Sender,
    delivery: Delivery,
    *,
    tokens: TokenSigner,
    rewriter: LinkRewriter | None = None,
) -> BuiltMessage:
    """One-off convenience; loops should keep one ``MessageBuilder``."""
    return MessageBuilder(tokens, rewriter=rewriter).build(template, recipient, sender, delivery)
