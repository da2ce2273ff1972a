"""Stage 4: UTM parameters, click-tracking links and the open pixel.

Only ``http(s)`` links are touched: never ``mailto:``/``tel:``, never the unsubscribe
or preferences links, and nothing at all (but UTM) when the contact has not consented to
tracking. The same URL in the HTML and text parts gets one link index.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from html import escape, unescape
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from postwise.messages.pipeline import Draft
from postwise.tracking.tokens import TokenKind

_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_TEXT_URL = re.compile(r"""https?://[^\s<>"'\])]+""", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def add_utm(url: str, utm: Mapping[str, str]) -> str:
    """Add the parameters the URL does not have yet; existing ones win."""
    return _add_utm(url, tuple(utm.items()))


@lru_cache(maxsize=8192)
def _add_utm(url: str, utm: tuple[tuple[str, str], ...]) -> str:
    # The same links recur in every message of a send, so the parsing is cached.
    parts = urlsplit(url)
    present = {key for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
    extra = [(k, v) for k, v in utm if k not in present]
    if not extra:
        return url
    query = f"{parts.query}&{urlencode(extra)}" if parts.query else urlencode(extra)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


@lru_cache(maxsize=8192)
def _href(raw: str) -> str:
    """An href attribute's URL; cached like ``_add_utm``, the same links recur."""
    return unescape(raw).strip()


@lru_cache(maxsize=8192)
def _final(url: str, own: str, utm: tuple[tuple[str, str], ...]) -> str | None:
    """The URL with UTM parameters, or None for what is never touched (not http(s),
    or our own unsubscribe/preferences link)."""
    if not url.lower().startswith(("http://", "https://")) or url.startswith(own):
        return None
    return _add_utm(url, utm) if utm else url


def rewrite_links(draft: Draft) -> Draft:
    delivery = draft.delivery
    own = draft.sender.base_url.rstrip("/") + "/u/"
    track = draft.recipient.tracking_consent and draft.rewriter is not None
    utm = dict(delivery.utm or {})
    if utm and delivery.campaign and "utm_campaign" not in utm:
        utm["utm_campaign"] = delivery.campaign
    utm_items = tuple(utm.items())
    rewritten: dict[str, str] = {}  # final URL -> tracking URL; one index per URL
    links = draft.links

    def target(url: str) -> str | None:
        final = _final(url, own, utm_items)
        if final is None:
            return None
        if not track:
            return final if final != url else None
        found = rewritten.get(final)
        if found is None:
            assert draft.rewriter is not None
            found = rewritten[final] = draft.rewriter(delivery.message_id, len(links), final)
            links.append(final)
        return found

    def in_html(match: re.Match[str]) -> str:
        new = target(_href(match.group(3)))
        if new is None:
            return match.group(0)
        return f"{match.group(1)}{match.group(2)}{escape(new, quote=True)}{match.group(2)}"

    def in_text(match: re.Match[str]) -> str:
        url = match.group(0).rstrip(".,;:!?")
        new = target(url)
        return match.group(0) if new is None else new + match.group(0)[len(url) :]

    if draft.html and (track or utm):
        draft.html = _HREF.sub(in_html, draft.html)
    if draft.text and (track or utm):
        draft.text = _TEXT_URL.sub(in_text, draft.text)
    opens = (
        delivery.track_opens if delivery.track_opens is not None else delivery.kind == "marketing"
    )
    if track and opens and draft.html:
        token = draft.tokens.sign(TokenKind.OPEN, delivery.message_id)
        pixel = (
            f'<img src="{escape(draft.sender.base_url.rstrip("/"))}/o/{token}" width="1" '
            'height="1" alt="" style="display:block;border:0;width:1px;height:1px">'
        )
        found = list(_BODY_END.finditer(draft.html))
        if found:
            at = found[-1].start()
            draft.html = draft.html[:at] + pixel + draft.html[at:]
        else:
            draft.html += pixel
    return draft
