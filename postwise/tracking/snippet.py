"""The website snippet ``/t.js`` as bytes ready to serve, with its validators.

The JavaScript lives in ``static/t.js`` (package data); the library version is written
into it once, at first use, and the ETag is the hash of the result, so a new release
changes the ETag and browsers fetch the new file after ``max-age``. A gzip copy is made
once too (about a third of the size); it has its own ETag, as a different representation.
See docs/tracking-web.md.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from postwise import __version__

VERSION_MARK = "__POSTWISE_VERSION__"


@dataclass(frozen=True)
class Representation:
    body: bytes
    etag: str  # quoted, as in the header
    encoding: str | None  # Content-Encoding, None for the plain file


@dataclass(frozen=True)
class Snippet:
    plain: Representation
    gzipped: Representation

    def for_request(self, accept_encoding: str | None) -> Representation:
        return self.gzipped if accepts_gzip(accept_encoding) else self.plain


@lru_cache(maxsize=1)
def snippet() -> Snippet:
    source = resources.files("postwise.tracking").joinpath("static/t.js").read_text("utf-8")
    body = source.replace(VERSION_MARK, __version__).encode()
    digest = hashlib.sha256(body).hexdigest()[:32]
    return Snippet(
        plain=Representation(body, f'"{digest}"', None),
        gzipped=Representation(gzip.compress(body, mtime=0), f'"{digest}-gz"', "gzip"),
    )


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding header allows gzip (``gzip`` or ``*``, q above 0)."""
    for item in (accept_encoding or "").split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        q = params.strip().lower()
        if q.startswith("q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison of an If-None-Match header against our ETag."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in if_none_match.split(","))
