"""Stage 7: DKIM signatures (RFC 6376), RSA-SHA256 and Ed25519-SHA256 (RFC 8463).

Canonicalization is relaxed/relaxed (RFC 6376 §3.4), written here because it is a few
lines and it runs on every message; the signature primitive is ``cryptography`` (about
0.7 ms for RSA-2048, where dkimpy's pure-Python signing takes ~10 ms). Keys are loaded
once per worker (``load_key``). Tests verify every signature with dkimpy's independent
``dkim.verify``. See docs/messages.md.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from postwise.core.errors import ValidationFailed
from postwise.messages.pipeline import DkimKey, Draft

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]
ALGORITHMS: dict[str, Algorithm] = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}
# Signed when present, in this order; a header added later in transit breaks no signature.
SIGNED = (
    "from",
    "reply-to",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "feedback-id",
)
OVERSIGNED = (
    "from", "reply-to", "to", "subject", "date", "message-id", "list-unsubscribe",
    "list-unsubscribe-post",
)  # fmt: skip
_WSP = re.compile(rb"[ \t]+")
_UNFOLD = re.compile(rb"\r\n(?=[ \t])")


def canonical_body(body: bytes) -> bytes:
    """Relaxed body canonicalization, by ``bytes.replace`` (C speed, no regex).

    Tabs become spaces, runs of spaces halve on each pass until single, and the one
    space left before a line end goes: the same bytes as the RFC's per-line rules. A
    regex over a 20 KB body cost as much as the RSA signature in the worker.
    """
    if b"\t" in body:
        body = body.replace(b"\t", b" ")
    while b"  " in body:
        body = body.replace(b"  ", b" ")
    if b" \r\n" in body:
        body = body.replace(b" \r\n", b"\r\n")
    body = body.rstrip(b"\r\n").rstrip(b" ")
    return body + b"\r\n" if body else b""


def canonical_header(name: bytes, value: bytes) -> bytes:
    """Relaxed header canonicalization, without the final CRLF."""
    value = _WSP.sub(b" ", _UNFOLD.sub(b"", value)).strip(b" ")
    return name.strip().lower() + b":" + value


def _fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """(name, raw value) for each header field, folds kept."""
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
        else:
            name, _, value = line.partition(b":")
            fields.append((name, value))
    return fields


def _fold_b64(value: str) -> str:
    return "\r\n ".join(value[i : i + 72] for i in range(0, len(value), 72))


def body_hash(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(canonical_body(body)).digest()).decode("ascii")


def signature_header(key: DkimKey, head: bytes, bh: str, timestamp: int) -> bytes:
    """The ``DKIM-Signature: ...`` line (CRLF-terminated) for one key."""
    present: dict[bytes, bytes] = {}
    for name, raw_value in _fields(head):
        present[name.strip().lower()] = raw_value  # a verifier signs the last instance
    names = [n for n in SIGNED if n.encode() in present]
    # Oversigning: each of these is listed once more than it occurs, which signs its
    # absence, so a relay cannot add a second From or an unsubscribe header of its own.
    listed = names + [n for n in OVERSIGNED if n in SIGNED]
    value = (
        f" v=1; a={key.algorithm}; c=relaxed/relaxed; d={key.domain};\r\n"
        f" s={key.selector}; t={timestamp};\r\n"
        f" h={':'.join(listed)};\r\n bh={bh};\r\n b="
    )
    signed = b"".join(
        canonical_header(n.encode(), present[n.encode()]) + b"\r\n" for n in names
    ) + canonical_header(b"DKIM-Signature", value.encode("ascii"))
    if key.algorithm == "rsa-sha256":
        raw = key.private_key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    else:
        raw = key.private_key.sign(hashlib.sha256(signed).digest())
    b = base64.b64encode(raw).decode("ascii")
    return f"DKIM-Signature:{value}\r\n {_fold_b64(b)}\r\n".encode("ascii")


def sign(draft: Draft) -> Draft:
    if not draft.sender.dkim:
        return draft
    head, _, body = draft.data.partition(b"\r\n\r\n")
    timestamp = int(draft.now.timestamp())
    bh = body_hash(body)
    signatures = [signature_header(key, head, bh, timestamp) for key in draft.sender.dkim]
    draft.data = b"".join(signatures) + draft.data
    return draft


# --- keys ---------------------------------------------------------------------------


def load_key(pem: bytes, *, domain: str, selector: str) -> DkimKey:
    """Parse a PEM private key once (RSA validation costs ~40 ms); share the result."""
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ValidationFailed(
            "The DKIM private key is not a readable unencrypted PEM key.", code="invalid_dkim_key"
        ) from None
    if isinstance(private, rsa.RSAPrivateKey):
        if private.key_size < 1024:
            raise ValidationFailed(
                "RSA DKIM keys need at least 1024 bits.", code="invalid_dkim_key"
            )
        algorithm: Algorithm = "rsa-sha256"
    elif isinstance(private, ed25519.Ed25519PrivateKey):
        algorithm = "ed25519-sha256"
    else:
        raise ValidationFailed("DKIM keys are RSA or Ed25519.", code="invalid_dkim_key")
    return DkimKey(
        domain=domain.lower().rstrip("."),
        selector=selector,
        algorithm=algorithm,
        private_key=private,
    )


def generate_private_key(algorithm: str = "rsa") -> bytes:
    """A new private key as PKCS#8 PEM: RSA-2048 or Ed25519."""
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif algorithm == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValidationFailed(
            "algorithm must be rsa or ed25519", code="invalid_algorithm", field="algorithm"
        )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def dns_record(key: DkimKey) -> str:
    """The TXT record value to publish at ``{selector}._domainkey.{domain}``."""
    public = key.private_key.public_key()
    if key.algorithm == "rsa-sha256":
        der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode('ascii')}"


def txt_strings(record: str) -> list[str]:
    """The record split into DNS character-strings of at most 255 characters."""
    return [record[i : i + 255] for i in range(0, len(record), 255)]
