"""The assembled bytes parse back, with Python's own email parser, to what went in."""

from __future__ import annotations

from collections.abc import Callable
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import parseaddr

import dkim as dkimpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postwise.core.errors import ValidationFailed
from postwise.messages import encoding
from postwise.messages.pipeline import Delivery, DkimKey, InlineImage, MessageBuilder
from postwise.messages.templates import TemplateSource, compile_template
from postwise.tracking.tokens import TokenSigner

from .conftest import FIXED_NOW, make_recipient, make_sender

BUILDER = MessageBuilder(TokenSigner(b"k"), clock=lambda: FIXED_NOW)
TEMPLATE = compile_template(
    TemplateSource(
        subject="{{ data.subject }}",
        html="<html><body><p>{{ data.body }}</p></body></html>",
        text="{{ data.body }}",
    )
)
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300) | st.builds(
    lambda word, n: word * n,
    st.sampled_from(["a", "é", "ab ", "\u00a0", "x\r\n"]),
    st.integers(0, 1500),
)


def _parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _lines_ok(data: bytes) -> None:
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert data.isascii()
    head, _, body = data.partition(b"\r\n\r\n")
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    assert all(len(line) <= 78 for line in body.split(b"\r\n"))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(body=any_text)
def test_quoted_printable_round_trips(body: str) -> None:
    encoded = encoding.quoted_printable(body)
    assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
    assert b"\n" not in encoded.replace(b"\r\n", b"")
    import quopri

    decoded = quopri.decodestring(encoded).decode("utf-8").replace("\r\n", "\n")
    assert decoded == body.replace("\r\n", "\n").replace("\r", "\n")


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(subject=any_text, name=any_text, body=any_text, first=any_text)
def test_arbitrary_unicode_parses_back(subject: str, name: str, body: str, first: str) -> None:
    message = BUILDER.build(
        TEMPLATE,
        make_recipient(name=name, fields={"first_name": first}),
        make_sender(from_name=name),
        Delivery(
            message_id=3,
            workspace_id=1,
            kind="transactional",
            data={"subject": subject, "body": body},
        ),
    )
    _lines_ok(message.data)
    parsed = _parse(message.data)
    assert not parsed.defects
    assert str(parsed["Subject"]) == " ".join(encoding.clean(subject).split())
    assert _display_name(message.data, b"To") == encoding.clean(name)
    assert _display_name(message.data, b"From") == encoding.clean(name)
    assert parsed["To"].addresses[0].addr_spec == "ann@corp.example"
    text_part = parsed.get_body(("plain",))
    normalized = body.replace("\r\n", "\n").replace("\r", "\n")
    if normalized.strip():
        assert text_part is not None
        assert text_part.get_content().replace("\r\n", "\n") == normalized
    html_part = parsed.get_body(("html",))
    assert html_part is not None and "<p>" in html_part.get_content()


def _display_name(data: bytes, header: bytes) -> str:
    """RFC 2047 decoding of a display name (adjacent encoded-words join without space).

    The stdlib's address parser keeps the space between adjacent encoded-words in a
    phrase, against RFC 2047 §6.2, so the phrase is decoded with ``decode_header``.
    """
    head = data.split(b"\r\n\r\n")[0].replace(b"\r\n ", b" ")
    line = next(raw for raw in head.split(b"\r\n") if raw.startswith(header + b": "))
    name, _ = parseaddr(line[len(header) + 2 :].decode("ascii"))
    return str(make_header(decode_header(name)))


HEADER_NAMES = {
    "date", "from", "to", "subject", "message-id", "mime-version", "feedback-id", "content-type",
    "list-id", "list-unsubscribe", "list-unsubscribe-post",
}  # fmt: skip


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    evil=st.lists(st.sampled_from(["\r\n", "\n", "\r", "Bcc: x@evil.example", "\x00", ": ", " "]))
    .map("".join)
    .flatmap(lambda s: st.tuples(st.just(s), any_text))
)
def test_header_injection_never_adds_a_header(evil: tuple[str, str]) -> None:
    payload = evil[0] + evil[1] + "\r\nBcc: victim@evil.example\r\n"
    message = BUILDER.build(
        TEMPLATE,
        make_recipient(name=payload, fields={"first_name": payload}),
        make_sender(from_name=payload),
        Delivery(message_id=4, workspace_id=1, data={"subject": payload, "body": "b"}),
    )
    _lines_ok(message.data)
    parsed = _parse(message.data)
    assert {key.lower() for key in parsed} == HEADER_NAMES
    assert parsed.get_all("Bcc") is None


def test_idn_and_structure() -> None:
    message = BUILDER.build(
        TEMPLATE,
        make_recipient(email="jörg@bücher.example".replace("jörg", "joerg"), name="Jörg Müller"),
        make_sender(from_name="Ünïcode GmbH", reply_to="help@straße.example"),
        Delivery(
            message_id=5,
            workspace_id=3,
            campaign="spring:sale",
            data={"subject": "Hi", "body": "x"},
        ),
    )
    parsed = _parse(message.data)
    assert message.rcpt == "joerg@xn--bcher-kva.example"
    assert parsed["To"].addresses[0].display_name == "Jörg Müller"
    assert parsed["Reply-To"].addresses[0].domain == "xn--strae-oqa.example"
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert (
        parsed["Message-ID"].endswith("@acme.example>")
        and message.message_id == parsed["Message-ID"]
    )
    assert parsed["Feedback-ID"] == "spring-sale:w3:marketing:postwise"
    assert parsed["Date"].datetime == FIXED_NOW
    assert message.mail_from.startswith("bounces+") and message.mail_from.endswith(
        "@bounce.acme.example"
    )


def test_non_ascii_local_part_is_refused() -> None:
    with pytest.raises(ValidationFailed) as err:
        BUILDER.build(
            TEMPLATE,
            make_recipient(email="jörg@corp.example"),
            make_sender(),
            Delivery(message_id=6, workspace_id=1, data={"subject": "s", "body": "b"}),
        )
    assert err.value.code == "invalid_email" and err.value.field == "email"


def test_inline_images_make_multipart_related(
    rsa_key: DkimKey, dnsfunc: Callable[..., bytes | None]
) -> None:
    png = bytes(range(256)) * 40
    template = compile_template(
        TemplateSource(
            subject="Logo", html='<p>Hello <img src="cid:logo@acme.example" alt="Acme"></p>'
        )
    )
    message = BUILDER.build(
        template,
        make_recipient(),
        make_sender(rsa_key),
        Delivery(
            message_id=8,
            workspace_id=1,
            kind="transactional",
            inline_images=(InlineImage("logo@acme.example", "image/png", png, "logo.png"),),
        ),
    )
    _lines_ok(message.data)
    parsed = _parse(message.data)
    assert parsed.get_content_type() == "multipart/related"
    alternative, image = list(parsed.iter_parts())
    assert [p.get_content_type() for p in alternative.iter_parts()] == ["text/plain", "text/html"]
    assert image["Content-ID"] == "<logo@acme.example>" and image.get_content() == png
    assert parsed.get_body(("html",)) is not None
    assert dkimpy.verify(message.data, dnsfunc=dnsfunc)


@pytest.mark.parametrize(
    ("cid", "content_type", "name"),
    [
        ("logo", "image/png", ""),
        ("a@b.example", "text/html", ""),
        ("a@b.example", "image/png", 'x"\r\n'),
    ],
)
def test_inline_image_fields_are_checked(cid: str, content_type: str, name: str) -> None:
    with pytest.raises(ValidationFailed):
        InlineImage(cid, content_type, b"x", name)
