"""``/t.js`` in a real browser: Debian's Chromium, driven by Playwright, loads a customer's
page from one local server and posts to Postwise on another (a cross-origin setup, as on
a real site). The events must arrive in the events table under the visitor's cookie id,
the identify must merge them into the contact, and Do-Not-Track, Global Privacy Control
and a missing consent must keep everything at home.

Needs ``/usr/bin/chromium`` (``.ci/run`` installs it); outside CI the tests skip without it.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import select

from postwise.api.app import create_app
from postwise.core.settings import Settings
from postwise.storage.database import Database
from postwise.storage.tables import Contact, Event
from postwise.workspaces.actions import NewWorkspace, create_workspace

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_SECONDS = 20  # an upper bound for events to land, not a performance expectation

STUB = (
    "window.postwise=window.postwise||[];"
    '["page","identify","track","consent"].forEach(function(m){'
    "postwise[m]=postwise[m]||function(){"
    "postwise.push([m].concat(Array.prototype.slice.call(arguments)))}});"
)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>The B2B Email Playbook</title>
<script>{stub}</script>
<script src="{postwise}/t.js" data-write-key="{key}" {extra} async></script>
<style>body {{ font: 16px sans-serif; margin: 2em; }} #thanks {{ color: green; }}</style>
</head><body>
<h1>The B2B Email Playbook</h1>
<p>42 pages on getting past security gateways.</p>
<button id="download"
  onclick="postwise.track('Lead Magnet Downloaded', {{asset: 'playbook.pdf', pages: 42}})">
  Download the PDF</button>
<form id="signup" onsubmit="event.preventDefault();
  postwise.identify('user-42', {{email: this.email.value, first_name: this.first_name.value}});
  document.getElementById('thanks').hidden = false;">
  <input name="email" placeholder="Work email"> <input name="first_name" placeholder="Name">
  <button type="submit">Send me more</button>
</form>
<p id="thanks" hidden>Thanks, check your inbox.</p>
</body></html>
"""


@pytest.fixture(scope="module")
def chromium() -> str:
    if shutil.which(CHROMIUM) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing; .ci/run must install the chromium package")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does)")
    return CHROMIUM


@dataclass
class Postwise:
    url: str
    workspace: NewWorkspace
    db: Database


@pytest.fixture
def postwise(db: Database, tmp_path: Path) -> Iterator[Postwise]:
    """A real Postwise API server on a free loopback port, on the test database."""
    with db.system() as s:
        workspace = create_workspace(s, "Acme")
    settings = Settings(environment="test", data_dir=tmp_path, database_url=db.url)
    config = uvicorn.Config(
        create_app(settings, db), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_SECONDS
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Postwise(f"http://127.0.0.1:{port}", workspace, db)
    finally:
        server.should_exit = True
        thread.join(timeout=WAIT_SECONDS)


SiteFactory = Callable[[str], str]


@pytest.fixture
def site(postwise: Postwise) -> Iterator[SiteFactory]:
    """A customer's web server (another origin) serving the landing page; returns its URL."""
    pages: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path.split("?")[0])
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(body or b"not found")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def page(extra: str = "") -> str:
        path = f"/landing{len(pages)}"
        html = PAGE.format(
            stub=STUB, postwise=postwise.url, key=postwise.workspace.write_key, extra=extra
        )
        pages[path] = html.encode()
        return f"http://127.0.0.1:{server.server_address[1]}{path}"

    try:
        yield page
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def browser(chromium: str) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def events(db: Database, workspace_id: int) -> list[Event]:
    with db.tenant(workspace_id) as s:
        rows = list(s.scalars(select(Event).order_by(Event.id)))
        s.expunge_all()
        return rows


def wait_for(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def cookie(context: Any, name: str) -> dict[str, Any] | None:
    return next((c for c in context.cookies() if c["name"] == name), None)


def test_page_view_event_and_identify_arrive_under_the_cookie_id(
    browser: Any, postwise: Postwise, site: SiteFactory, tmp_path: Path
) -> None:
    ws = postwise.workspace.workspace_id
    url = site("") + "?utm_source=newsletter&utm_medium=email&utm_campaign=spring"
    context = browser.new_context(locale="de-DE")
    page = context.new_page()
    # Calls made before t.js arrives are kept by the stub and replayed in order.
    page.add_init_script("window.postwise=[['track','Visited Early',{from:'stub'}]];")
    page.goto(url)
    page.wait_for_function("window.postwise && window.postwise.loaded === true")
    page.click("#download")
    page.fill("input[name=email]", "ada@initech.com")
    page.fill("input[name=first_name]", "Ada")
    page.click("button[type=submit]")
    page.wait_for_selector("#thanks", state="visible")

    aid = cookie(context, "pw_aid")
    assert aid is not None, "the anonymous id cookie was not set"
    assert aid["sameSite"] == "Lax" and aid["path"] == "/" and aid["domain"] == "127.0.0.1"
    expires = datetime.fromtimestamp(aid["expires"], UTC) - datetime.now(UTC)
    assert timedelta(days=364) < expires <= timedelta(days=366)
    assert page.evaluate("localStorage.getItem('pw_aid')") == aid["value"]

    names = {"Visited Early", "Page Viewed", "Lead Magnet Downloaded", "Identify"}
    stored = wait_for(
        lambda: (rows := events(postwise.db, ws)) and {e.name for e in rows} >= names and rows,
        "the page view, the custom events and the identify",
    )
    by_name = {e.name: e for e in stored}
    assert len(stored) == 4, [e.name for e in stored]
    assert {e.anonymous_id for e in stored} == {aid["value"]}

    view = by_name["Page Viewed"]
    assert view.type == "page"
    assert view.properties["path"].startswith("/landing")
    assert view.properties["title"] == "The B2B Email Playbook"
    assert view.context["campaign"] == {"source": "newsletter", "medium": "email", "name": "spring"}
    assert (
        view.context["page"]["search"]
        == "?utm_source=newsletter&utm_medium=email&utm_campaign=spring"
    )
    assert view.context["library"]["name"] == "postwise.js"
    assert view.context["locale"] == "de-DE"
    assert "Chrome" in view.context["userAgent"]
    assert view.context["ip"] == "127.0.0.1"

    download = by_name["Lead Magnet Downloaded"]
    assert download.type == "track"
    assert download.properties == {"asset": "playbook.pdf", "pages": 42}
    assert by_name["Visited Early"].properties == {"from": "stub"}

    # The identify made the contact, and the visitor's earlier events became theirs.
    with postwise.db.tenant(ws) as s:
        ada = s.scalars(select(Contact).where(Contact.email == "ada@initech.com")).one()
        assert (ada.first_name, ada.external_id) == ("Ada", "user-42")
        contact_id = ada.id
    wait_for(
        lambda: all(e.contact_id == contact_id for e in events(postwise.db, ws)),
        "the anonymous events to merge into the contact",
    )
    with TestClient(create_app(Settings(environment="test"), postwise.db)) as api:
        api.headers["Authorization"] = f"Bearer {postwise.workspace.api_key}"
        timeline = api.get(f"/api/contacts/{contact_id}/timeline").json()["data"]
        listed = api.get(f"/api/contacts/{contact_id}/events").json()["data"]
    assert {e["name"] for e in timeline if e["kind"] == "event"} >= names
    assert {e["name"] for e in listed} == names
    assert [e["user_id"] for e in listed if e["name"] == "Identify"] == ["user-42"]

    # A later page of the same visitor carries the same ids and the remembered userId.
    second = context.new_page()
    second.goto(site(""))
    second.evaluate("postwise.flush()")
    wait_for(lambda: len(events(postwise.db, ws)) == 5, "the second page view")
    last = events(postwise.db, ws)[-1]
    assert (last.name, last.anonymous_id, last.contact_id) == (
        "Page Viewed",
        aid["value"],
        contact_id,
    )
    context.close()


def nothing_sent(page: Any, postwise: Postwise) -> None:
    """Flush the snippet, then fetch a sentinel from Postwise: requests leave in the order
    they are issued, so by the time the sentinel is seen any batch would have been too."""
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url))
    with page.expect_request(f"{postwise.url}/healthz"):
        page.evaluate(f"postwise.flush(); fetch('{postwise.url}/healthz', {{mode: 'no-cors'}})")
    assert not [url for url in sent if "/v1/" in url], sent


@pytest.mark.parametrize(
    "signal",
    [
        "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})",
        "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})",
    ],
    ids=["do-not-track", "global-privacy-control"],
)
def test_do_not_track_sends_nothing_and_sets_no_cookie(
    browser: Any, postwise: Postwise, site: SiteFactory, signal: str
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.add_init_script(signal)
    page.goto(site(""))
    page.wait_for_function("window.postwise && window.postwise.loaded === true")
    page.click("#download")
    page.evaluate("postwise.consent(true)")  # a site's banner cannot override the browser
    nothing_sent(page, postwise)
    assert context.cookies() == []
    assert page.evaluate("localStorage.length") == 0
    assert events(postwise.db, postwise.workspace.workspace_id) == []
    context.close()


def test_required_consent_holds_everything_until_given(
    browser: Any, postwise: Postwise, site: SiteFactory
) -> None:
    ws = postwise.workspace.workspace_id
    url = site('data-require-consent="true"')
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("window.postwise && window.postwise.loaded === true")
    page.click("#download")
    nothing_sent(page, postwise)
    assert context.cookies() == [] and page.evaluate("localStorage.length") == 0

    page.evaluate("postwise.consent(true)")
    page.evaluate("postwise.flush()")
    stored = wait_for(
        lambda: len(rows := events(postwise.db, ws)) == 2 and rows, "the held page view and event"
    )
    assert [e.name for e in stored] == ["Page Viewed", "Lead Magnet Downloaded"]
    aid = cookie(context, "pw_aid")
    assert aid is not None and {e.anonymous_id for e in stored} == {aid["value"]}
    assert cookie(context, "pw_consent") is not None

    # Consent is remembered on the next page; withdrawing it forgets the visitor.
    again = context.new_page()
    again.goto(url)
    again.evaluate("postwise.flush()")
    wait_for(lambda: len(events(postwise.db, ws)) == 3, "the page view after consent")
    again.evaluate("postwise.consent(false)")
    assert context.cookies() == [] and again.evaluate("localStorage.getItem('pw_aid')") is None
    again.click("#download")
    nothing_sent(again, postwise)
    assert len(events(postwise.db, ws)) == 3
    context.close()


def test_events_survive_leaving_the_page_and_json_posts_pass_the_preflight(
    browser: Any, postwise: Postwise, site: SiteFactory
) -> None:
    ws = postwise.workspace.workspace_id
    context = browser.new_context()
    page = context.new_page()
    page.goto(site(""))
    page.wait_for_function("window.postwise && window.postwise.loaded === true")
    # Click and leave at once, long before the flush timer: the beacon on pagehide carries it.
    page.click("#download")
    page.goto(site(""))
    wait_for(
        lambda: "Lead Magnet Downloaded" in {e.name for e in events(postwise.db, ws)},
        "the event sent as the page was left",
    )

    # A page calling /v1 itself with JSON and Basic auth triggers a CORS preflight.
    status = page.evaluate(
        """([host, key]) => fetch(host + "/v1/track", {
            method: "POST",
            headers: {"Content-Type": "application/json",
                      "Authorization": "Basic " + btoa(key + ":")},
            body: JSON.stringify({event: "Checkout Started", anonymousId: "direct-1"}),
        }).then((r) => r.status)""",
        [postwise.url, postwise.workspace.write_key],
    )
    assert status == 200
    assert "direct-1" in {e.anonymous_id for e in events(postwise.db, ws)}
    context.close()
