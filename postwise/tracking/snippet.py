"""The website snippet ``/t.js`` as bytes ready to serve, with its validator.

The JavaScript lives in ``static/t.js`` (package data); the library version is written
into it once, at first use, and the ETag is the hash of the result, so a new release
changes the ETag and browsers fetch the new file after ``max-age``.
See docs/tracking-web.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from postwise import __version__

VERSION_MARK = "__POSTWISE_VERSION__"


@dataclass(frozen=True)
class Snippet:
    body: bytes
    etag: str  # quoted, as in the header


@lru_cache(maxsize=1)
def snippet() -> Snippet:
    source = resources.files("postwise.tracking").joinpath("static/t.js").read_text("utf-8")
    body = source.replace(VERSION_MARK, __version__).encode()
    return Snippet(body=body, etag=f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison of an If-None-Match header against our ETag."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in if_none_match.split(","))
