"""Stage 6: the message bytes, assembled directly (no ``email.message`` round trip).

text only -> text/plain; text + HTML -> multipart/alternative, wrapped in
multipart/related when the send carries inline images (``<img src="cid:logo">``).
Text parts are UTF-8 quoted-printable, images base64; every line ends in CRLF and stays
within 78 characters. The preheader is a hidden first element of the HTML body.
"""

from __future__ import annotations

import base64
import re
from html import escape

from postwise.messages import encoding
from postwise.messages.pipeline import Draft, InlineImage
from postwise.tracking.tokens import TokenKind

_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def _with_preheader(html: str, preheader: str) -> str:
    if not preheader:
        return html
    hidden = (
        '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all">'
        f"{escape(preheader)}</div>"
    )
    match = _BODY_OPEN.search(html)
    if match is None:
        return hidden + html
    return html[: match.end()] + hidden + html[match.end() :]


def _image_part(image: InlineImage) -> bytes:
    body = base64.encodebytes(image.data).replace(b"\n", b"\r\n")
    name = f'; filename="{image.filename}"' if image.filename else ""
    return (
        f"Content-Type: {image.content_type}\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        f"Content-ID: <{image.cid}>\r\n"
        f"Content-Disposition: inline{name}\r\n\r\n"
    ).encode("ascii") + body


def _alternative(text: str, html: str, boundary: str) -> tuple[bytes, bytes]:
    """(Content-Type line, body) of the text + HTML alternative."""
    parts: list[bytes] = []
    if text:
        parts.append(_text_part("text/plain", text, boundary))
    parts.append(_text_part("text/html", html, boundary))
    parts.append(f"--{boundary}--\r\n".encode("ascii"))
    head = f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'.encode("ascii")
    return head, b"".join(parts)


def _text_part(content_type: str, content: str, boundary: str) -> bytes:
    return b"".join(
        (
            f"--{boundary}\r\nContent-Type: {content_type}; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode("ascii"),
            encoding.quoted_printable(content),
            b"\r\n",
        )
    )


def assemble(draft: Draft) -> Draft:
    parts: list[bytes] = [f"{name}: {value}\r\n".encode("ascii") for name, value in draft.headers]
    text = draft.text if draft.text.strip() or not draft.html else ""
    if draft.html:
        # Boundaries start "=_", which quoted-printable always writes as "=3D_" and base64
        # never contains; the token makes them unique per message anyway.
        token = draft.tokens.sign(TokenKind.OPEN, draft.delivery.message_id)
        html = _with_preheader(draft.html, draft.preheader)
        head, body = _alternative(text, html, f"=_pw_a_{token}")
        images = draft.delivery.inline_images
        if images:
            related = f"=_pw_r_{token}"
            parts.append(
                f'Content-Type: multipart/related;\r\n boundary="{related}";\r\n'
                ' type="multipart/alternative"\r\n\r\n'.encode("ascii")
            )
            parts += [f"--{related}\r\n".encode("ascii"), head, b"\r\n", body, b"\r\n"]
            for image in images:
                parts += [f"--{related}\r\n".encode("ascii"), _image_part(image), b"\r\n"]
            parts.append(f"--{related}--\r\n".encode("ascii"))
        else:
            parts += [head, b"\r\n", body]
    else:
        parts.append(
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        )
        parts.append(encoding.quoted_printable(text))
        parts.append(b"\r\n")
    draft.data = b"".join(parts)
    return draft
