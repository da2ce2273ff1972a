"""Raw inbound bytes -> ``ParsedMessage``: what came back, for whom, and what the MTA said.

Detection runs from the most structured format to the least: an ARF feedback report
(RFC 5965), an RFC 3464 delivery status notification, an RFC 3834 auto-reply, then the
free-text bounces real MTAs and gateways send (qmail, Exim, DragonFly, Gmail, Yahoo,
Domino, ...), read with the line patterns of ``data/formats.py``. Every string the parser
looks for lives in that table, so a new MTA's wording is a line there, not a branch here.
``classifier.classify`` turns each recipient's code and sentence into a reason.

``parse_message`` never raises: intake must keep every message, so anything unreadable
comes back as ``Kind.UNPARSED`` (or best effort) with ``unparsed_reason`` (docs/bounces.md).
"""

from __future__ import annotations

import email
import email.header
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from email.message import Message
from email.policy import Compat32
from typing import Any

from postwise.bounces import classifier
from postwise.bounces.data import formats, origins
from postwise.bounces.report import Kind, ParsedMessage, RecipientOutcome

MAX_BYTES = 2_000_000  # bounce facts sit at the top; the rest is the returned original
MAX_PARTS = 64
MAX_TEXT = 40_000  # characters of human-readable text scanned for recipients
MAX_DIAGNOSTIC = 600

_ADDR = formats.ADDRESS
_ADDR_RE = re.compile(_ADDR)
_ANGLE_ADDR_RE = re.compile(r"<(" + _ADDR + r")>")
# The look-behinds sit after the first digit, not before it: a pattern that opens with a
# character class lets the regex engine skip to candidate positions instead of trying each.
_STATUS_RE = re.compile(r"([45](?<![\w.][45])\.\d{1,3}\.\d{1,3})(?![\w.]*\d)")
_DSN_STATUS_RE = re.compile(r"([245]\.\d{1,3}\.\d{1,3})")
_REPLY_RE = re.compile(r"([45](?<![\w.\-/:#=\[][45])[0-5]\d)(?=[\s\-:]|$)")
_SENDER_FIELDS: dict[str, list[tuple[str, str, str]]] = {}
for _name, _field, _how, _words in origins.SENDERS:
    _SENDER_FIELDS.setdefault(_field, []).append((_name, _how, _words))
_FIELD_RE = re.compile(r"^([A-Za-z][\w-]*)\s*:\s?(.*)$")
_MBOX_FROM_RE = re.compile(rb"\A(?:\r?\n)*From [^\r\n]*\r?\n")
_MBOX_NEXT_RE = re.compile(rb"\r?\n\r?\nFrom [^\r\n]+ \d{4}\r?\n")
_TAG_RE = re.compile(r"<[^>]*>")
_STRIP_QUOTE_RE = re.compile(r"^(?:>\s?)+", re.MULTILINE)


class _Policy(Compat32):
    """compat32, minus the surrogate check on plain ASCII values (nearly every header):
    reading a field back is the parse's most repeated step."""

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if value.__class__ is str and value.isascii():
            return value  # no surrogate-escaped bytes: compat32 returns it as is
        return super().header_fetch_parse(name, value)


class _Message(Message):
    """A compat32 message that remembers its content type: the feed parser and the walk
    ask each part for it a dozen times, and each ask scans every header field."""

    _ctype: tuple[object, str] | None = None

    def get_content_type(self) -> str:
        key = (id(self._headers), len(self._headers), self._default_type)  # type: ignore[attr-defined]
        cached = self._ctype
        if cached is not None and cached[0] == key:
            return cached[1]
        ctype: str = super().get_content_type()
        self._ctype = (key, ctype)
        return ctype

    def replace_header(self, _name: str, _value: Any) -> None:
        self._ctype = None  # the only change that keeps the field list's identity and length
        super().replace_header(_name, _value)


_POLICY = _Policy()


def _message_from_bytes(raw: bytes) -> Message:
    return email.message_from_bytes(raw, _class=_Message, policy=_POLICY)


@dataclass
class _Pieces:
    """What the MIME walk found, before any interpretation."""

    texts: list[str] = field(default_factory=list)  # human-readable parts, in order
    delivery_status: str | None = None
    feedback_report: str | None = None
    original: dict[str, str] | None = None  # headers of the returned message
    notes: list[str] = field(default_factory=list)


@dataclass
class _Found:
    """One recipient as read from a DSN block or from the text, before classification."""

    recipient: str | None
    status: str | None = None
    action: str | None = None
    diagnostic: str = ""
    remote_mta: str | None = None
    command: str | None = None
    fixed_reason: str | None = None  # the format itself says why (formats.FORMAT_REASONS)


def parse_message(raw: bytes) -> ParsedMessage:
    """Never raises: anything unexpected becomes ``Kind.UNPARSED`` with the reason."""
    try:
        return _parse(raw)
    except Exception as exc:  # intake must keep every message, whatever went wrong
        return ParsedMessage(
            kind=Kind.UNPARSED, unparsed_reason=f"{type(exc).__name__}: {exc}"[:300]
        )


def _parse(raw: bytes) -> ParsedMessage:
    notes: list[str] = []
    if not isinstance(raw, bytes | bytearray):
        return ParsedMessage(kind=Kind.UNPARSED, unparsed_reason="input is not bytes")
    if len(raw) > MAX_BYTES:
        raw = raw[:MAX_BYTES]
        notes.append(f"truncated to {MAX_BYTES} bytes")
    raw = _MBOX_FROM_RE.sub(b"", bytes(raw), count=1)
    following = _MBOX_NEXT_RE.search(raw) if b"\nFrom " in raw else None  # mbox: the first
    if following:
        raw = raw[: following.start()]
    if not raw.strip():
        return ParsedMessage(kind=Kind.UNPARSED, unparsed_reason="empty message")
    msg = _message_from_bytes(raw)
    repaired = _repair_boundary(raw, msg)
    if repaired is not None:
        msg = repaired
        notes.append("MIME boundary repaired")
    if not msg.keys():
        return ParsedMessage(kind=Kind.UNPARSED, unparsed_reason="no header fields")
    fields = [(k.lower(), str(v)) for k, v in msg.items()]
    head = dict(reversed(fields))  # first occurrence wins
    subject = _header_text(head.get("subject"))
    from_address = _first_address(_header_text(head.get("from")))
    pieces = _Pieces()
    _walk(msg, pieces, 0)
    notes.extend(pieces.notes)
    body = "\n".join(pieces.texts)[:MAX_TEXT]
    error_text, inline_original = _split_original(body)
    original = pieces.original or inline_original or {}
    base = ParsedMessage(
        kind=Kind.NOT_BOUNCE,
        original_message_id=_angle_strip(original.get("message-id")),
        original_return_path=_first_address(original.get("return-path")),
        original_headers={k: v for k, v in original.items() if k.startswith("x-postwise-")},
        subject=subject,
        from_address=from_address,
        unparsed_reason="; ".join(notes) or None,
    )

    if pieces.feedback_report is not None or _is_feedback(head, original):
        outcomes = _complaint(pieces.feedback_report or "", head, original)
        return replace(base, kind=Kind.COMPLAINT, recipients=outcomes)
    opt_out = _opt_out(head)
    if opt_out:
        outcomes = _complaint("", head, {"to": from_address or ""}, opt_out)
        return replace(base, kind=Kind.COMPLAINT, recipients=outcomes)
    ses = (
        _ses_notification(body)
        if "amazon" in body[:4000].lower() or body.lstrip()[:1] == "{"
        else None
    )
    if ses is not None:
        return _from_ses(ses, base)

    found: list[_Found] = []
    reporting_mta = None
    if pieces.delivery_status:
        reporting_mta, found = _read_dsn(pieces.delivery_status)
        _enrich_from_text(found, error_text)
    is_bounce = bool(found) or _looks_like_bounce(head, subject, error_text, bool(original))
    if not is_bounce:
        if _is_autoreply(head, subject):
            who = from_address or _first_address(_header_text(head.get("reply-to")))
            outcome = RecipientOutcome(recipient=who, reason="vacation", hard=False)
            return replace(base, kind=Kind.AUTOREPLY, recipients=(outcome,))
        return base
    text_bounce = not found
    if text_bounce:
        found = _scan_text(error_text, _sender_addresses(head, original))
    to = _first_address(original.get("to")) if original else None
    if not found:
        found = [_Found(recipient=to, diagnostic=_collapse(error_text)[:MAX_DIAGNOSTIC])]
    elif to and len(found) == 1 and found[0].recipient is None:
        found[0].recipient = to
    fixed = _format_reason(error_text) if text_bounce else None
    for item in found:
        if not item.diagnostic.strip():
            item.diagnostic = _collapse(error_text)[:MAX_DIAGNOSTIC]
        elif text_bounce and classifier.is_vague(item.diagnostic):  # the reason sits above
            item.diagnostic = _join(item.diagnostic, _collapse(error_text)[:MAX_DIAGNOSTIC])
        item.fixed_reason = fixed
    writers = _writers(fields, head, error_text)
    outcomes = tuple(_classify(item, writers, reporting_mta) for item in found)
    kind = Kind.BOUNCE
    if outcomes and all(o.reason == "delivered" for o in outcomes):
        kind = Kind.DELIVERED
    return replace(base, kind=kind, recipients=outcomes, reporting_mta=reporting_mta)


def _from_ses(note: dict[str, Any], base: ParsedMessage) -> ParsedMessage:
    kind, found, ftype = _ses_found(note)
    mail = note.get("mail") or {}
    if isinstance(mail, dict):
        headers = {
            str(h.get("name", "")).lower(): str(h.get("value", ""))
            for h in mail.get("headers") or []
            if isinstance(h, dict)
        }
        base = replace(
            base,
            original_message_id=_angle_strip(headers.get("message-id")) or base.original_message_id,
            original_return_path=_first_address(str(mail.get("source") or ""))
            or base.original_return_path,
            original_headers={k: v for k, v in headers.items() if k.startswith("x-postwise-")},
        )
    if kind is Kind.COMPLAINT:
        outcomes = tuple(
            RecipientOutcome(
                recipient=f.recipient, reason="feedback", hard=False, feedback_type=ftype
            )
            for f in found
        ) or (RecipientOutcome(recipient=None, reason="feedback", hard=False, feedback_type=ftype),)
        return replace(base, kind=kind, recipients=outcomes)
    return replace(base, kind=kind, recipients=tuple(_classify(f) for f in found))


_USED_BOUNDARY = re.compile(rb"^--([^\s]{6,200}?)\r?\n(?=[A-Za-z-]+:|\r?\n)", re.M)


def _repair_boundary(raw: bytes, msg: Message) -> Message | None:
    """Re-read a report whose parts use another boundary than the header declares.

    Some MTAs (and anonymizers) leave a multipart header without a matching boundary, or
    no Content-Type at all above MIME parts; the standard parser then sees one text blob.
    """
    declared_multipart = msg.get_content_maintype() == "multipart"
    if msg.is_multipart() or (not declared_multipart and msg.get("Content-Type") is not None):
        return None
    if not declared_multipart and b"message/delivery-status" not in raw[:200_000].lower():
        return None
    m = _USED_BOUNDARY.search(raw, 0, 200_000)
    if not m or m.group(1).endswith(b"--"):
        return None
    boundary = m.group(1).decode("ascii", "replace").replace('"', "")
    header = f'Content-Type: multipart/report; boundary="{boundary}"\r\n'.encode()
    fixed = _message_from_bytes(header + raw)
    return fixed if fixed.is_multipart() else None


# --- MIME walk ---------------------------------------------------------------------------


def _walk(part: Message, pieces: _Pieces, depth: int) -> None:
    if depth > 8 or len(pieces.texts) > MAX_PARTS:
        pieces.notes.append("MIME nesting too deep")
        return
    ctype = part.get_content_type()
    if ctype == "message/delivery-status":
        pieces.delivery_status = _message_part_text(part)
        return
    if ctype == "message/feedback-report":
        pieces.feedback_report = _message_part_text(part)
        return
    if ctype in ("message/rfc822", "message/global", "message/partial"):
        inner = part.get_payload()
        if (
            pieces.delivery_status is None
            and isinstance(inner, list)
            and inner
            and isinstance(inner[0], Message)
            and inner[0].get_content_type() == "multipart/report"
        ):
            _walk(inner[0], pieces, depth + 1)  # a whole DSN forwarded as an attachment
            return
        if pieces.original is None:
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                pieces.original = _header_map(inner[0])
                if not pieces.original:  # some MTAs put the header text in the body
                    pieces.original = _header_block(_payload_text(inner[0]))
            elif isinstance(inner, str):
                pieces.original = _header_block(inner)
        return
    if ctype in ("text/rfc822-headers", "message/rfc822-headers", "text/global-headers"):
        if pieces.original is None:
            pieces.original = _header_block(_payload_text(part))
        return
    if part.is_multipart():
        payload = part.get_payload()
        if isinstance(payload, list):
            for sub in payload[:MAX_PARTS]:
                if isinstance(sub, Message):
                    _walk(sub, pieces, depth + 1)
        return
    maintype = ctype.partition("/")[0]
    if maintype == "multipart":  # no usable boundary: read it as text
        raw_payload = part.get_payload()
        if isinstance(raw_payload, str):
            pieces.texts.append(raw_payload[:MAX_TEXT])
        return
    if maintype == "text" and "attachment" not in str(part.get("Content-Disposition", "")).lower():
        text = _payload_text(part)
        if ctype == "text/html":
            if any(t for t in pieces.texts):  # a text/plain sibling says the same
                return
            text = _html_to_text(text)
        pieces.texts.append(text)
    elif depth == 0 and maintype != "multipart":
        pieces.texts.append(_payload_text(part))


def _payload_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if payload is None:
        inner = part.get_payload()
        if isinstance(inner, list):  # message/* parsed into sub-messages
            return "\n\n".join(_message_text(m) for m in inner if isinstance(m, Message))
        return inner if isinstance(inner, str) else ""
    if not isinstance(payload, bytes):
        return str(payload)
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except (LookupError, TypeError):
        return payload.decode("utf-8", errors="replace")


def _message_text(msg: Message) -> str:
    lines = [f"{k}: {v}" for k, v in msg.items()]
    body = msg.get_payload()
    if isinstance(body, str) and body.strip():
        lines.append("")
        lines.append(body)
    return "\n".join(lines)


def _message_part_text(part: Message) -> str:
    """message/delivery-status is parsed by compat32 into one Message per field block."""
    inner = part.get_payload()
    if isinstance(inner, list):
        return "\n\n".join(_message_text(m) for m in inner if isinstance(m, Message))
    return _payload_text(part)


def _html_to_text(html: str) -> str:
    html = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", html)
    html = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</tr>|</li>", "\n", html)
    text = _TAG_RE.sub(" ", html)
    return (
        text.replace("&nbsp;", " ").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    )


# --- headers -----------------------------------------------------------------------------


def _header_text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    if "=?" not in text:
        return _collapse(text)
    try:
        return _collapse(str(email.header.make_header(email.header.decode_header(text))))
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
        return _collapse(text)


def _header_map(msg: Message) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in msg.items():
        k = key.lower()
        if k not in out:
            out[k] = _collapse(str(value))
    return out


def _header_block(text: str) -> dict[str, str]:
    """Header fields at the top of ``text`` (a returned original quoted as text)."""
    out: dict[str, str] = {}
    last: str | None = None
    started = False
    for line in text.splitlines()[:200]:
        if not line.strip():
            if started:
                break
            continue
        if line[0] in " \t" and started:
            if last is not None:
                out[last] += " " + line.strip()
            continue
        m = _FIELD_RE.match(line.strip())
        if not m:
            if started:
                break
            continue
        started = True
        last = m.group(1).lower()
        if last in out:
            last = None
            continue
        out[last] = m.group(2).strip()
    return out


def _first_address(value: str | None) -> str | None:
    if not value or "@" not in value:  # both patterns need one; a miss costs a full scan
        return None
    m = _ANGLE_ADDR_RE.search(value) or _ADDR_RE.search(value)
    return _clean_address(m.group(1) if m.re is _ANGLE_ADDR_RE else m.group(0)) if m else None


def _clean_address(addr: str) -> str:
    return addr.strip().strip("<>'.,;:()[]").lower()


def _angle_strip(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    m = re.search(r"<([^<>\s]+)>", value)
    return m.group(1) if m else (value.split()[0] if value.split() else None)


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _sender_addresses(head: dict[str, str], original: dict[str, str]) -> set[str]:
    """Addresses on our side: never reported as the failed recipient."""
    out: set[str] = set()
    for value in (
        head.get("to"),
        head.get("delivered-to"),
        head.get("from"),
        head.get("return-path"),
    ):
        addr = _first_address(_header_text(value))
        if addr:
            out.add(addr)
    for key in ("from", "return-path", "sender", "reply-to"):
        addr = _first_address(original.get(key))
        if addr:
            out.add(addr)
    return out


# --- the returned original inside text -------------------------------------------------


def _split_original(body: str) -> tuple[str, dict[str, str] | None]:
    """The MTA's own words, and the headers of the original when it is quoted inline."""
    m = formats.ORIGINAL_BOUNDARY.search(body)
    if not m:
        return body, None
    headers = _header_block(_STRIP_QUOTE_RE.sub("", body[m.end() : m.end() + 20_000]))
    return body[: m.start()], headers or None


# --- ARF ---------------------------------------------------------------------------------


def _is_feedback(head: dict[str, str], original: dict[str, str]) -> bool:
    ctype = head.get("content-type", "")
    if "feedback-report" in str(ctype).lower():
        return True
    return any(head.get(h.lower()) or original.get(h.lower()) for h in formats.FEEDBACK_HEADERS)


def _opt_out(head: dict[str, str]) -> str | None:
    for header, pattern, feedback_type in formats.OPT_OUT_HEADERS:
        value = head.get(header.lower())
        if value is not None and pattern.search(str(value)):
            return feedback_type
    return None


_RCPT_TO_FIELD = re.compile(r"^(?:original-rcpt-to|removal-recipient)\s*:\s*(.+)$", re.I | re.M)
_FEEDBACK_TYPE = re.compile(r"^feedback-type\s*:\s*([\w-]+)", re.I | re.M)
_REPORTING_MTA = re.compile(r"^reporting-mta\s*:\s*(?:dns;\s*)?(\S+)", re.I | re.M)


def _complaint(
    report: str, head: dict[str, str], original: dict[str, str], feedback_type: str | None = None
) -> tuple[RecipientOutcome, ...]:
    m = _FEEDBACK_TYPE.search(report)
    ftype = feedback_type or (m.group(1).lower() if m else "abuse")
    recipients: list[str | None] = []
    for value in _RCPT_TO_FIELD.findall(report):
        recipients.extend(_clean_address(a) for a in _ADDR_RE.findall(value))
    if not recipients:
        for header in formats.FEEDBACK_HEADERS:
            addr = _first_address(
                _header_text(head.get(header.lower())) or original.get(header.lower())
            )
            if addr:
                recipients = [addr]
                break
    if not recipients and original.get("to"):
        recipients = [_first_address(original["to"])]
    if not recipients:
        recipients = [None]
    mta = _REPORTING_MTA.search(report)
    return tuple(
        RecipientOutcome(
            recipient=r,
            reason="feedback",
            hard=False,
            feedback_type=ftype,
            remote_mta=mta.group(1) if mta else None,
        )
        for r in dict.fromkeys(recipients)
    )


# --- Amazon SES notifications delivered by mail (SNS e-mail subscriptions) ---------------


def _ses_notification(body: str) -> dict[str, Any] | None:
    start = body.find("{")
    if start < 0 or start > 200 or "notificationType" not in body[:200_000]:
        return None
    text = body[start : body.rfind("}") + 1]
    for candidate in (text, re.sub(r"\r?\n ", "", text), re.sub(r"\r?\n", "", text)):
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("Message"), str):
            try:
                data = json.loads(data["Message"])
            except ValueError:
                return None
        if isinstance(data, dict) and data.get("notificationType"):
            return data
        return None
    return None


def _ses_found(note: dict[str, Any]) -> tuple[Kind, list[_Found], str | None]:
    """SES bounce/complaint/delivery JSON -> the same records as a DSN."""
    kind_name = str(note.get("notificationType", "")).lower()
    found: list[_Found] = []
    if kind_name == "complaint":
        body = note.get("complaint") or {}
        ftype = str(body.get("complaintFeedbackType") or "abuse")
        rows = body.get("complainedRecipients") or []
        return (
            Kind.COMPLAINT,
            [_Found(recipient=_first_address(str(r.get("emailAddress", "")))) for r in rows],
            ftype,
        )
    if kind_name == "delivery":
        body = note.get("delivery") or {}
        for rcpt in body.get("recipients") or []:
            found.append(
                _Found(
                    recipient=_first_address(str(rcpt)),
                    action="delivered",
                    status="2.0.0",
                    diagnostic=str(body.get("smtpResponse") or ""),
                )
            )
        return Kind.DELIVERED, found, None
    body = note.get("bounce") or {}
    for rcpt in body.get("bouncedRecipients") or []:
        found.append(
            _Found(
                recipient=_first_address(str(rcpt.get("emailAddress", ""))),
                action=str(rcpt.get("action") or "failed").lower(),
                status=(str(rcpt.get("status")) if rcpt.get("status") else None),
                diagnostic=_typed_value(str(rcpt.get("diagnosticCode") or "")),
            )
        )
    return Kind.BOUNCE, found, None


# --- DSN (RFC 3464) ----------------------------------------------------------------------


def _dsn_blocks(text: str) -> Iterator[dict[str, str]]:
    block: dict[str, str] = {}
    last: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if block:
                yield block
            block, last = {}, None
            continue
        if line[0] in " \t" and last:
            block[last] += " " + line.strip()
            continue
        m = _FIELD_RE.match(line)
        if not m:
            continue
        key = m.group(1).lower()
        if key == "final-recipient" and "final-recipient" in block:  # blocks run together
            yield block
            block = {}
        last = key
        block.setdefault(key, m.group(2).strip())
    if block:
        yield block


def _typed_value(value: str | None) -> str:
    """``rfc822; a@b`` -> ``a@b`` (the address type is ours to ignore)."""
    if not value:
        return ""
    head, sep, rest = value.partition(";")
    if sep and " " not in head.strip() and "@" not in head:
        return rest.strip()
    return value.strip()


def _read_dsn(text: str) -> tuple[str | None, list[_Found]]:
    reporting: str | None = None
    found: list[_Found] = []
    for block in _dsn_blocks(text):
        if "reporting-mta" in block and reporting is None:
            reporting = _typed_value(block["reporting-mta"]) or None
        final = _first_address(_typed_value(block.get("final-recipient")))
        orig = _first_address(_typed_value(block.get("original-recipient")))
        rcpt = final or orig
        if rcpt is None and not ("action" in block or "status" in block):
            continue
        status_m = _DSN_STATUS_RE.search(block.get("status", ""))
        found.append(
            _Found(
                recipient=rcpt,
                status=status_m.group(1) if status_m else None,
                action=(block.get("action") or "").strip().lower().split(" ")[0] or None,
                diagnostic=_collapse(_typed_value(block.get("diagnostic-code"))),
                remote_mta=_typed_value(block.get("remote-mta")) or None,
            )
        )
    return reporting, found


def _enrich_from_text(found: list[_Found], error_text: str) -> None:
    """A DSN's human-readable part often says more (the remote sentence, the command)."""
    if not error_text.strip():
        return
    whole = _collapse(error_text)[: MAX_DIAGNOSTIC * 2]
    if all(f.recipient and f.diagnostic and not classifier.is_vague(f.diagnostic) for f in found):
        command = _command(whole)  # the report says enough: only the command is missing
        for item in found:
            item.command = item.command or command
        return
    by_rcpt = {f.recipient: f for f in _scan_text(error_text, set()) if f.recipient}
    for item in found:
        hit = by_rcpt.get(item.recipient) if item.recipient else None
        if hit is None and len(found) == 1 and len(by_rcpt) == 1:
            hit = next(iter(by_rcpt.values()))
            if item.recipient is None:
                item.recipient = hit.recipient
        extra = hit.diagnostic if hit and hit.diagnostic else ""
        if item.command is None:
            item.command = (hit.command if hit else None) or _command(whole)
        if not item.diagnostic or classifier.is_vague(item.diagnostic):
            item.diagnostic = _join(item.diagnostic, extra or whole)


def _join(a: str, b: str) -> str:
    return (a + " " + b).strip()[: MAX_DIAGNOSTIC * 2] if b else a


# --- free-text bounces -------------------------------------------------------------------


def _looks_like_bounce(
    head: dict[str, str], subject: str | None, text: str, has_original: bool
) -> bool:
    """A delivery report, a daemon's From or Return-Path, a bounce subject, or bounce
    wording above a returned original.

    Wording alone is not enough: a person may well write "could not be delivered".
    """
    if "delivery-status" in head.get("content-type", "").lower():
        return True
    for name in ("from", "return-path"):
        sender = _header_text(head.get(name))
        if sender and formats.BOUNCE_SENDER.search(sender):
            return True
    if subject and formats.BOUNCE_SUBJECT.search(subject):
        return True
    top = text[:8000]
    if formats.BOUNCE_BODY_ALONE.search(top):
        return True
    return has_original and bool(formats.BOUNCE_BODY.search(top))


def _format_reason(text: str) -> str | None:
    for pattern, reason in formats.FORMAT_REASONS:
        if pattern.search(text):
            return reason
    return None


def _is_autoreply(head: dict[str, str], subject: str | None) -> bool:
    for header, pattern in formats.AUTOREPLY_HEADERS:
        value = head.get(header.lower())
        if value is not None and pattern.search(str(value)):
            return True
    return bool(subject and formats.AUTOREPLY_SUBJECT.search(subject))


def _scan_text(text: str, exclude: set[str], loose: bool = True) -> list[_Found]:
    """Recipients and their sentences from a bounce written for humans.

    A recipient line (``formats.RECIPIENT_LINES``) opens a record; the lines after it, to
    the end of its paragraph, are its diagnostic (the next paragraph when the line stood
    alone, as DragonFly and Exim write it, and further paragraphs while the sentence
    still names no reason, as Gmail writes "will be retried" before the remote error).
    """
    records: list[_Found] = []
    current: _Found | None = None
    paused: _Found | None = None  # a record whose paragraph ended without naming a reason
    lines_in_current = 0
    blank_run = 0
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line:
            blank_run += 1
            if current is not None and lines_in_current > 0:
                paused, current = current, None
            continue
        if current is None and paused is not None:
            if formats.STOP_LINE.search(line) or not classifier.is_vague(paused.diagnostic):
                paused = None
            elif "@" not in line:
                current, paused = paused, None
        continued = current is not None and formats.CONTINUED.search(current.diagnostic)
        addr, before, after = (None, "", "") if continued else _recipient_on(line)
        if addr is not None and addr not in exclude:
            rest = _join(before, after)
            if current is not None and current.recipient == addr:
                current.diagnostic = _join(current.diagnostic, rest)
                continue
            current, paused = _Found(recipient=addr, diagnostic=rest), None
            records.append(current)
            lines_in_current = 1 if len(after) > 3 else 0
            blank_run = 0
            continue
        if current is not None:
            if blank_run >= 2 and lines_in_current == 0:
                current = None
                continue
            if formats.STOP_LINE.search(line):
                current = None
                continue
            if len(current.diagnostic) < MAX_DIAGNOSTIC:
                current.diagnostic = _join(current.diagnostic, line)
            lines_in_current += 1
        blank_run = 0
    if not records and exclude:
        records = _scan_text(text, set(), loose=False)  # mail to self: the address is ours
    if not records and loose:
        records = _loose_addresses(text, exclude)
    merged: dict[str, _Found] = {}
    for rec in records:
        assert rec.recipient is not None
        rec.diagnostic = _collapse(rec.diagnostic)[:MAX_DIAGNOSTIC]
        rec.command = _command(rec.diagnostic)
        rec.status = None
        if rec.recipient in merged:
            merged[rec.recipient].diagnostic = _join(
                merged[rec.recipient].diagnostic, rec.diagnostic
            )
        else:
            merged[rec.recipient] = rec
    return list(merged.values())


def _recipient_on(line: str) -> tuple[str | None, str, str]:
    """The address a recipient line names, and the text before and after it."""
    if "@" not in line:
        return None, "", ""
    for pattern in formats.RECIPIENT_LINES:
        m = pattern.search(line)
        if m:
            addr = _clean_address(m.group("addr"))
            if formats.NOT_RECIPIENT.search(addr):
                return None, "", ""
            before = line[: m.start()].strip(" .:")
            code = _STATUS_RE.search(line, m.start(), m.start("addr"))
            if code:  # Sendmail's "550 5.1.1 <a@b>... User unknown": keep the codes
                before = _join(before, line[m.start() : m.start("addr")].strip(" <\"'"))
            if "rcpt to" in m.group(0).lower():  # keep the command the remote answered
                before = _join(before, "RCPT TO")
            return addr, before, line[m.end() :].strip(" .:")
    return None, "", ""


def _loose_addresses(text: str, exclude: set[str]) -> list[_Found]:
    """Last resort: addresses named anywhere in the MTA's words."""
    candidates: list[str] = []
    for m in _ANGLE_ADDR_RE.finditer(text):
        candidates.append(_clean_address(m.group(1)))
    if not candidates:
        for m in _ADDR_RE.finditer(text):
            start = m.start()
            if text[max(0, start - 8) : start].find("/") >= 0:  # inside a URL
                continue
            candidates.append(_clean_address(m.group(0)))
    whole = _collapse(text)[:MAX_DIAGNOSTIC]
    out = []
    for addr in dict.fromkeys(candidates):
        if addr in exclude or formats.NOT_RECIPIENT.search(addr):
            continue
        out.append(_Found(recipient=addr, diagnostic=whole))
    return out[:1] if len(out) > 3 else out


def _command(text: str) -> str | None:
    lowered = text.lower()
    for sentence, stage in formats.STAGE_SENTENCES:
        if sentence in lowered:
            return stage
    if not any(cue in lowered for cue in formats.SMTP_COMMAND_CUES):
        return None
    if text.isascii():  # case folding is then plain lower-casing: the faster search
        m = formats.SMTP_COMMAND_LOWER.search(lowered)
    else:
        m = formats.SMTP_COMMAND.search(text)
    if not m:
        return None
    word = m.group("cmd").upper().replace(" ", "").replace("_", "")
    if word.startswith("RCPT"):
        return "RCPT"
    if word.startswith("MAIL"):
        return "MAIL"
    if "DATA" in word or word == ".":
        return "DATA"
    if word == "INITIALCONNECTION":
        return "CONNECT"
    return word


# --- classification ----------------------------------------------------------------------


def _writers(fields: list[tuple[str, str]], head: dict[str, str], text: str) -> tuple[str, ...]:
    """The MTAs whose layout this bounce has (``data/origins.SENDERS``), read from headers
    (every occurrence: Exchange names itself in any ``Received``) and, failing that, words
    of the body."""
    names: list[str] = []
    for key, tests in _SENDER_FIELDS.items():
        if key == "received":
            values = [v for k, v in fields if k == key]
        elif key in head:
            values = [head[key]]
        else:
            continue
        for value in values:
            lowered = value.lower()
            for name, how, words in tests:
                if name in names:
                    continue
                if how == "prefix" and not lowered.lstrip().startswith(words):
                    continue
                if how == "in" and words not in lowered:
                    continue
                also = origins.SENDER_ALSO.get(name)
                if also is None or also[1] in (head.get(also[0]) or "").lower():
                    names.append(name)
    top = text[:8000]
    for name, words in origins.SENDER_BODY:
        if name not in names and words in top:
            names.append(name)
    return tuple(names)


def _remotes(item: _Found, diagnostic: str, reporting_mta: str | None) -> tuple[str, ...]:
    """Receiving providers named by the remote or reporting MTA, the diagnostic's host
    names, or the recipient's domain (``data/origins.REMOTES``)."""
    hosts = f"{item.remote_mta or ''} {reporting_mta or ''} {diagnostic}".lower()
    domain = item.recipient.rpartition("@")[2] if item.recipient else ""
    names = []
    for name, suffixes, domains in origins.REMOTES:
        if domain in domains:
            names.append(name)
            continue
        for suffix in suffixes:
            if suffix in hosts:
                names.append(name)
                break
    return tuple(names)


def _classify(
    item: _Found, writers: tuple[str, ...] = (), reporting_mta: str | None = None
) -> RecipientOutcome:
    diagnostic = _collapse(item.diagnostic)[: MAX_DIAGNOSTIC * 2]
    status = item.status
    if status is None or status.endswith(".0.0"):
        m = _STATUS_RE.search(diagnostic)
        if m and (status is None or not m.group(1).endswith(".0.0")):
            status = m.group(1)
    reply_m = _REPLY_RE.search(diagnostic)
    reply_code = int(reply_m.group(1)) if reply_m else None
    command = item.command or _command(diagnostic)
    verdict = classifier.classify(
        fixed_reason=item.fixed_reason,
        status=status,
        reply_code=reply_code,
        diagnostic=diagnostic,
        action=item.action,
        command=command,
        origins=writers + _remotes(item, diagnostic, reporting_mta),
        find_status=False,  # looked for above
    )
    return RecipientOutcome(
        recipient=item.recipient,
        reason=verdict.reason,
        hard=verdict.hard,
        status=status,
        reply_code=reply_code,
        action=item.action,
        diagnostic=diagnostic or None,
        remote_mta=item.remote_mta,
        filter_wording=verdict.filter_wording,
    )
