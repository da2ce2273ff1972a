"""``GET /t.js``: the website tracking snippet customers embed; docs/tracking-web.md.

Public and identical for every workspace (the write key is in the page's script tag), so
it is cacheable by browsers and CDNs; revalidation by ETag answers 304 without a body.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response

from postwise.tracking.snippet import etag_matches, snippet

router = APIRouter(tags=["tracking"])

JAVASCRIPT = "text/javascript; charset=utf-8"
MAX_AGE_SECONDS = 3600


@router.get(
    "/t.js",
    summary="Website tracking snippet",
    response_class=Response,
    responses={
        200: {"content": {JAVASCRIPT: {}}, "description": "The snippet."},
        304: {"description": "The cached copy (If-None-Match) is current."},
    },
)
def tracking_snippet(
    if_none_match: Annotated[str | None, Header(include_in_schema=False)] = None,
    accept_encoding: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    chosen = snippet().for_request(accept_encoding)
    headers = {
        "ETag": chosen.etag,
        "Cache-Control": f"public, max-age={MAX_AGE_SECONDS}",
        "Vary": "Accept-Encoding",
        "Access-Control-Allow-Origin": "*",
        "X-Content-Type-Options": "nosniff",
    }
    if etag_matches(if_none_match, chosen.etag):
        return Response(status_code=304, headers=headers)
    if chosen.encoding:
        headers["Content-Encoding"] = chosen.encoding
    return Response(chosen.body, media_type=JAVASCRIPT, headers=headers)
