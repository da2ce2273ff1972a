"""Stage 6: the message bytes, assembled directly (no ``email.message`` round trip).

text only -> text/plain; text + HTML -> multipart/alternative. Both parts are UTF-8
quoted-printable; every line ends in CRLF and stays within 78 characters. The preheader
is a hidden first element of the HTML body.
"""

from __future__ import annotations

import re
from html import escape

from postwise.messages import encoding
from postwise.messages.pipeline import Draft
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


def assemble(draft: Draft) -> Draft:
    parts: list[bytes] = []
    for name, value in draft.headers:
        parts.append(f"{name}: {value}\r\n".encode("ascii"))
    text = draft.text if draft.text.strip() or not draft.html else ""
    if draft.html:
        # The boundary never occurs in quoted-printable output: it contains "=_" which QP
        # always writes as "=3D_"; the token makes it unique per message anyway.
        boundary = f"=_pw_{draft.tokens.sign(TokenKind.OPEN, draft.delivery.message_id)}"
        parts.append(
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode("ascii")
        )
        html = _with_preheader(draft.html, draft.preheader)
        sections = []
        if text:
            sections.append(("text/plain", encoding.quoted_printable(text)))
        sections.append(("text/html", encoding.quoted_printable(html)))
        for content_type, body in sections:
            parts.append(
                f"--{boundary}\r\nContent-Type: {content_type}; charset=utf-8\r\n"
                "Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode("ascii")
            )
            parts.append(body)
            parts.append(b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode("ascii"))
    else:
        parts.append(
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        )
        parts.append(encoding.quoted_printable(text))
        parts.append(b"\r\n")
    draft.data = b"".join(parts)
    return draft
