"""``/o/{token}`` (open pixel) and ``/c/{token}`` (click redirect) of sent messages.

Not under ``/api/``: mail clients and people's browsers fetch these with no credentials;
the signed token is the whole authority. A token that does not verify, or names a link
the message does not have, gets a 404 and no ``Location``: never an open redirect.
See docs/tracking.md.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import PlainTextResponse, RedirectResponse
from starlette.background import BackgroundTask

from postwise.segments import changes as segment_changes
from postwise.storage.database import Database
from postwise.tracking import email_activity
from postwise.tracking.tokens import TokenSigner

router = APIRouter(tags=["email tracking"], include_in_schema=True)
Token = Annotated[str, Path(min_length=8, max_length=200)]

# A 1x1 transparent GIF, the smallest image every mail client shows.
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
    "Referrer-Policy": "no-referrer",
}


def _context(request: Request) -> tuple[Database, TokenSigner]:
    """The app's database and a signer made once per app. Read from ``app.state``, not
    through ``Depends``: FastAPI runs each sync dependency in the thread pool, and these
    two hops would cost more than the rest of the request (benchmarks/click_latency.py)."""
    state = request.app.state
    signer: TokenSigner | None = getattr(state, "token_signer", None)
    if signer is None:
        signer = state.token_signer = TokenSigner(state.settings.resolved_secret_key())
    return state.db, signer


def _hit(request: Request) -> email_activity.Hit:
    return email_activity.Hit(
        method=request.method,
        user_agent=request.headers.get("user-agent", ""),
        ip=request.client.host if request.client else None,
    )


def _segments(db: Database, recorded: email_activity.Recorded, event: str) -> BackgroundTask | None:
    """Segment re-evaluation for the contact, noted after the response is sent, so the
    pixel and the redirect wait for nothing (docs/segments.md#real-time); no task at all
    when no active segment of the workspace was recently seen to name this event."""
    if recorded.contact_id is None or not segment_changes.may_matter(
        recorded.workspace_id, segment_changes.event_key(event)
    ):
        return None
    return BackgroundTask(
        segment_changes.note_now, db, recorded.workspace_id, recorded.contact_id, event
    )


def _not_found() -> Response:
    return PlainTextResponse("Not found", status_code=404, headers=NO_CACHE)


@router.get("/o/{token}", summary="Email open pixel")
@router.head("/o/{token}", include_in_schema=False)
def open_pixel(token: Token, request: Request) -> Response:
    db, signer = _context(request)
    recorded = email_activity.record_open(db, signer, token, _hit(request))
    if recorded is None:
        return _not_found()
    background = _segments(db, recorded, email_activity.OPENED)
    return Response(PIXEL, media_type="image/gif", headers=NO_CACHE, background=background)


@router.get("/c/{token}", summary="Email click redirect")
@router.head("/c/{token}", include_in_schema=False)
def click_redirect(token: Token, request: Request) -> Response:
    db, signer = _context(request)
    recorded = email_activity.record_click(db, signer, token, _hit(request))
    if recorded is None or recorded.url is None:
        return _not_found()
    background = _segments(db, recorded, email_activity.CLICKED)
    return RedirectResponse(recorded.url, status_code=302, headers=NO_CACHE, background=background)
