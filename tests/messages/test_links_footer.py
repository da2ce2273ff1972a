"""Link rewriting, UTM, the open pixel and the compliance footer, on built messages."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest

from postwise.core.errors import ValidationFailed
from postwise.messages.pipeline import Delivery, MessageBuilder
from postwise.messages.templates import TemplateSource, compile_template
from postwise.tracking.tokens import TokenKind, TokenSigner

from .conftest import make_recipient, make_sender

HTML = (
    "<html><body><p>Hi</p>"
    '<a href="https://shop.example/a?ref=news&amp;utm_source=keep">A</a>'
    "<a href='http://shop.example/b'>B</a>"
    '<a href="https://shop.example/a?ref=news&amp;utm_source=keep">A again</a>'
    '<a href="mailto:sales@acme.example">mail</a><a href="tel:+4930123">call</a>'
    '<a href="{{ unsubscribe_url }}">Unsubscribe</a><br>Acme Ltd, 1 Main Street, Springfield'
    "</body></html>"
)
TEXT = (
    "Shop: http://shop.example/b.\nUnsubscribe: {{ unsubscribe_url }}\n"
    "Acme Ltd, 1 Main Street, Springfield\n"
)
TEMPLATE = compile_template(TemplateSource(subject="s", html=HTML, text=TEXT))


def _parts(data: bytes) -> tuple[str, str]:
    message = message_from_bytes(data, policy=policy.default)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return text, html


def test_links_are_tracked_with_consent(builder: MessageBuilder, tokens: TokenSigner) -> None:
    built = builder.build(
        TEMPLATE,
        make_recipient(tracking_consent=True),
        make_sender(),
        Delivery(
            message_id=77,
            workspace_id=1,
            campaign="spring",
            utm={"utm_source": "postwise", "utm_medium": "email"},
        ),
    )
    text, html = _parts(built.data)
    assert built.links == [
        "https://shop.example/a?ref=news&utm_source=keep&utm_medium=email&utm_campaign=spring",
        "http://shop.example/b?utm_source=postwise&utm_medium=email&utm_campaign=spring",
    ]
    click0 = tokens.sign(TokenKind.CLICK, 77, 0)
    click1 = tokens.sign(TokenKind.CLICK, 77, 1)
    assert html.count(f"https://t.acme.example/c/{click0}") == 2
    assert (
        f"https://t.acme.example/c/{click1}" in html
        and f"https://t.acme.example/c/{click1}." in text
    )
    assert "mailto:sales@acme.example" in html and "tel:+4930123" in html
    unsubscribe = tokens.sign(TokenKind.UNSUBSCRIBE, 1, 7, 0, 77)
    assert f'href="https://t.acme.example/u/{unsubscribe}"' in html
    assert f"/o/{tokens.sign(TokenKind.OPEN, 77)}" in html
    assert "shop.example" not in html
    assert html.count("Unsubscribe") == 1  # the template's own footer is kept, none added


def test_no_tracking_without_consent(builder: MessageBuilder) -> None:
    built = builder.build(
        TEMPLATE,
        make_recipient(tracking_consent=False),
        make_sender(),
        Delivery(message_id=78, workspace_id=1, utm={"utm_source": "postwise"}),
    )
    text, html = _parts(built.data)
    assert built.links == []
    assert "/c/" not in html and "/o/" not in html and "/c/" not in text
    assert "href='http://shop.example/b?utm_source=postwise'" in html
    assert 'utm_source=keep"' in html  # an existing parameter wins


def test_footer_is_added_to_marketing_mail(builder: MessageBuilder) -> None:
    template = compile_template(
        TemplateSource(subject="s", html="<html><body><p>Offer</p></body></html>")
    )
    built = builder.build(
        template, make_recipient(), make_sender(), Delivery(message_id=1, workspace_id=1)
    )
    text, html = _parts(built.data)
    message = message_from_bytes(built.data, policy=policy.default)
    https, mailto = (part.strip(" <>") for part in str(message["List-Unsubscribe"]).split(","))
    assert https.startswith("https://t.acme.example/u/") and mailto.startswith(
        "mailto:unsubscribe+"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    for part in (text, html):
        assert "1 Main Street" in part and https in part
    assert html.index("Unsubscribe") < html.index("</body>")


def test_transactional_mail_has_no_list_headers(builder: MessageBuilder) -> None:
    template = compile_template(TemplateSource(subject="Receipt", html="<p>Paid</p>"))
    built = builder.build(
        template,
        make_recipient(),
        make_sender(postal_address=""),
        Delivery(message_id=1, workspace_id=1, kind="transactional"),
    )
    message = message_from_bytes(built.data, policy=policy.default)
    assert message["List-Unsubscribe"] is None and message["List-Id"] is None


def test_marketing_needs_a_postal_address(builder: MessageBuilder) -> None:
    template = compile_template(TemplateSource(subject="s", html="<p>x</p>"))
    with pytest.raises(ValidationFailed) as err:
        builder.build(
            template,
            make_recipient(),
            make_sender(postal_address=" "),
            Delivery(message_id=1, workspace_id=1),
        )
    assert err.value.code == "postal_address_required"
