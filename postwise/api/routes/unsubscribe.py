"""``/u/{token}``: the unsubscribe link of every message (docs/delivery.md).

``POST`` is RFC 8058 one-click: mailbox providers post ``List-Unsubscribe=One-Click``
with no cookies, so there is no session and no CSRF token; the signed token is the whole
authority, and a repeated POST changes nothing more. ``GET`` never changes anything (link
scanners fetch every URL): it shows a confirmation button and the preference center,
whose form posts back here with ``action=preferences``.
"""

from __future__ import annotations

from html import escape
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from postwise.api.dependencies import get_db, get_settings
from postwise.core.settings import Settings
from postwise.delivery import preferences as choices
from postwise.delivery import unsubscribe
from postwise.storage.database import Database
from postwise.tracking.tokens import TokenSigner

router = APIRouter(tags=["unsubscribe"], include_in_schema=True)
Token = Annotated[str, Path(min_length=8, max_length=200, pattern=r"^[a-z0-9]+$")]


def _ref(settings: Settings, token: str) -> unsubscribe.Ref:
    return unsubscribe.decode(TokenSigner(settings.resolved_secret_key()), token)


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width'>"
        f"<title>{escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}"
        "button{padding:.5rem 1rem}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def _preference_form(token: str, prefs: unsubscribe.Preferences) -> str:
    boxes = "".join(
        f"<p><label><input type='checkbox' name='keep' value='{c.list_id}'"
        f"{' checked' if c.subscribed else ''}> {escape(c.name)}</label></p>"
        for c in prefs.lists
    )
    topics = "".join(
        f"<p><label><input type='checkbox' name='topic' value='{escape(t.key)}'"
        f"{' checked' if t.subscribed else ''}> {escape(t.name)}</label></p>"
        for t in prefs.topics
    )
    topic_part = f"<h2>Topics</h2>{topics}" if prefs.topics else ""
    radios = "".join(
        f"<p><label><input type='radio' name='frequency' value='{key}'"
        f"{' checked' if key == prefs.frequency else ''}> {escape(label)}</label></p>"
        for key, label in choices.FREQUENCY_LABELS.items()
    )
    return (
        f"<form method='post' action='/u/{token}'>"
        "<input type='hidden' name='action' value='preferences'>"
        "<input type='hidden' name='choices' value='1'>"
        f"<h2>Your subscriptions</h2>{boxes or '<p>You are on no list.</p>'}"
        f"{topic_part}<h2>How often</h2>{radios}"
        "<p><label><input type='checkbox' name='all' value='1'> "
        "Unsubscribe from all marketing mail</label></p>"
        "<p><button type='submit'>Save preferences</button></p></form>"
    )


@router.get("/u/{token}", response_class=HTMLResponse, summary="Unsubscribe page")
def unsubscribe_page(
    token: Token,
    db: Annotated[Database, Depends(get_db)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> HTMLResponse:
    ref = _ref(settings, token)
    with db.tenant(ref.workspace_id) as session:
        prefs = unsubscribe.preferences(session, ref)
    confirm = (
        f"<p>Stop receiving these emails at <b>{escape(prefs.email)}</b>?</p>"
        f"<form method='post' action='/u/{token}'>"
        "<button type='submit' name='List-Unsubscribe' value='One-Click'>Unsubscribe</button>"
        "</form>"
    )
    return _page("Unsubscribe", confirm + _preference_form(token, prefs))


@router.post(
    "/u/{token}",
    response_model=None,
    summary="One-click unsubscribe (RFC 8058) and saving preferences",
)
async def unsubscribe_post(
    token: Token,
    request: Request,
    db: Annotated[Database, Depends(get_db)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> PlainTextResponse | HTMLResponse:
    ref = _ref(settings, token)
    content_type = request.headers.get("content-type", "")
    is_form = content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))
    form = await request.form() if is_form else None
    if form is not None and form.get("action") == "preferences":
        keep = [int(v) for v in form.getlist("keep") if isinstance(v, str) and v.isdigit()]
        everything = form.get("all") == "1"
        # Only a form that showed the choices may change them (an unticked box is absent).
        shown = form.get("choices") == "1"
        topics = [v for v in form.getlist("topic") if isinstance(v, str)] if shown else None
        frequency = form.get("frequency")
        how_often = frequency if shown and isinstance(frequency, str) else None

        def save() -> unsubscribe.Preferences:
            with db.tenant(ref.workspace_id) as session:
                return unsubscribe.save_preferences(
                    session,
                    ref,
                    keep,
                    unsubscribe_everything=everything,
                    keep_topics=topics,
                    frequency=how_often,
                )

        prefs = await run_in_threadpool(save)
        return _page("Preferences saved", _preference_form(token, prefs))

    def leave() -> None:
        with db.tenant(ref.workspace_id) as session:
            unsubscribe.one_click(session, ref)

    await run_in_threadpool(leave)
    if "text/html" in request.headers.get("accept", ""):
        return _page("You are unsubscribed", "<p>You will not get these emails any more.</p>")
    return PlainTextResponse("unsubscribed\n")
