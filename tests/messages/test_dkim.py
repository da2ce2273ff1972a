"""Every signature is checked by dkimpy's independent verifier against a DNS stub."""

from __future__ import annotations

from collections.abc import Callable

import dkim as dkimpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postwise.core.errors import ValidationFailed
from postwise.messages import dkim
from postwise.messages.pipeline import Delivery, DkimKey, MessageBuilder
from postwise.messages.templates import TemplateSource, compile_template
from postwise.tracking.tokens import TokenSigner

from .conftest import make_recipient, make_sender

LONG_LINE = "word " * 400


def _verify_all(data: bytes, count: int, dnsfunc: Callable[..., bytes | None]) -> list[bool]:
    results = []
    for i in range(count):
        try:
            results.append(bool(dkimpy.DKIM(data).verify(idx=i, dnsfunc=dnsfunc)))
        except dkimpy.ValidationError:  # dkimpy raises on a body hash mismatch
            results.append(False)
    return results


@pytest.mark.parametrize("which", ["rsa", "ed25519", "both"])
@pytest.mark.parametrize(
    ("subject", "name", "body"),
    [
        ("Plain subject", "Ann Lee", "<p>Hello</p>"),
        ("Déjà vu — ünïcödé 日本語 " * 6, 'Zoë Ñúñez, "CEO"', "<p>Grüße, 你好 🎉</p>"),
        ("Long " * 40, "Bob", f"<p>{LONG_LINE}</p>\n\n\n<p>  trailing   spaces   </p>   \n"),
    ],
)
def test_signatures_verify_with_dkimpy(
    builder: MessageBuilder,
    rsa_key: DkimKey,
    ed_key: DkimKey,
    dnsfunc: Callable[..., bytes | None],
    which: str,
    subject: str,
    name: str,
    body: str,
) -> None:
    keys = {"rsa": (rsa_key,), "ed25519": (ed_key,), "both": (rsa_key, ed_key)}[which]
    template = compile_template(
        TemplateSource(subject=subject, html=f"<html><body>{body}</body></html>")
    )
    message = builder.build(
        template,
        make_recipient(name=name),
        make_sender(*keys),
        Delivery(message_id=1, workspace_id=1),
    )
    assert message.data.count(b"DKIM-Signature:") == len(keys)
    assert b"\r\n " in message.data.split(b"\r\n\r\n")[0]  # folded headers are covered
    assert _verify_all(message.data, len(keys), dnsfunc) == [True] * len(keys)


def test_signature_covers_list_unsubscribe(
    builder: MessageBuilder, rsa_key: DkimKey, ed_key: DkimKey, dnsfunc: Callable[..., bytes | None]
) -> None:
    template = compile_template(TemplateSource(subject="Hi", html="<p>x</p>"))
    data = builder.build(
        template,
        make_recipient(),
        make_sender(rsa_key, ed_key),
        Delivery(message_id=9, workspace_id=2),
    ).data
    head = data.split(b"\r\n\r\n")[0]
    for signature in head.split(b"DKIM-Signature:")[1:]:
        unfolded = signature.replace(b"\r\n", b"").replace(b" ", b"")
        assert b"list-unsubscribe:list-unsubscribe-post" in unfolded
    tampered = data.replace(
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: x"
    )
    assert _verify_all(tampered, 2, dnsfunc) == [False, False]
    body_tampered = data.replace(b"<p>x</p>", b"<p>y</p>")
    assert _verify_all(body_tampered, 2, dnsfunc) == [False, False]


def test_txt_record_is_split_for_dns() -> None:
    key = dkim.load_key(dkim.generate_private_key("rsa"), domain="x.example", selector="s")
    record = dkim.dns_record(key)
    strings = dkim.txt_strings(record)
    assert len(strings) == 2 and all(len(s) <= 255 for s in strings)
    assert "".join(strings) == record and record.startswith("v=DKIM1; k=rsa; p=")


def test_bad_key_is_refused() -> None:
    with pytest.raises(ValidationFailed) as err:
        dkim.load_key(
            b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
            domain="x.example",
            selector="s",
        )
    assert err.value.code == "invalid_dkim_key"


def test_canonical_body_matches_rfc_examples() -> None:
    # RFC 6376 §3.4.5 example, relaxed body.
    assert dkim.canonical_body(b" C \r\nD \t E\r\n\r\n\r\n") == b" C\r\nD E\r\n"
    assert dkim.canonical_body(b"") == b""
    assert dkim.canonical_header(b"SUBJect", b" AbC\r\n\tdef  ") == b"subject:AbC def"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subject=st.text(max_size=200),
    body=st.text(max_size=2000)
    | st.builds(
        lambda w, n: w * n, st.sampled_from([" ", "\t", "a  \t b\n", "é "]), st.integers(0, 400)
    ),
)
def test_arbitrary_content_verifies(
    ed_key: DkimKey, dnsfunc: Callable[..., bytes | None], subject: str, body: str
) -> None:
    template = compile_template(
        TemplateSource(subject="{{ data.s }}", html="<p>{{ data.b }}</p>", text="{{ data.b }}")
    )
    builder = MessageBuilder(TokenSigner(b"k"))
    message = builder.build(
        template,
        make_recipient(name=subject),
        make_sender(ed_key),
        Delivery(
            message_id=2, workspace_id=1, kind="transactional", data={"s": subject, "b": body}
        ),
    )
    assert _verify_all(message.data, 1, dnsfunc) == [True]


def test_added_headers_break_the_signature(
    builder: MessageBuilder, rsa_key: DkimKey, dnsfunc: Callable[..., bytes | None]
) -> None:
    template = compile_template(TemplateSource(subject="Hi", html="<p>x</p>"))
    data = builder.build(
        template, make_recipient(), make_sender(rsa_key), Delivery(message_id=3, workspace_id=1)
    ).data
    assert _verify_all(data, 1, dnsfunc) == [True]
    # Prepended, as a relay would: unsigned without oversigning, since a verifier signs
    # the bottom-most instance of each listed name.
    for added in (b"From: ceo@evil.example\r\n", b"Reply-To: x@evil.example\r\n"):
        assert _verify_all(added + data, 1, dnsfunc) == [False]
