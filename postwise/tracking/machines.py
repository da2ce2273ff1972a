"""Was an email open or click a person, or a machine acting for them? (docs/tracking.md)

Pure rules over what one request shows: the method, the user agent, the client's network,
the time since the message was sent and, for clicks, how many distinct links of the
message were clicked just before. The first rule that matches gives the reason stored
with the event (``properties.machine_reason``, see ``actors.py``). User-agent rules are
data (``USER_AGENT_RULES``), so adding a scanner is one line; so are networks
(``data/machine_networks.toml``, read by ``networks.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postwise.tracking import networks

# (pattern, reason); searched in order, case-insensitive.
USER_AGENT_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), reason)
    for pattern, reason in (
        # Apple Mail Privacy Protection fetches every image through Apple's proxy with
        # the bare "Mozilla/5.0" and no platform or engine tokens.
        (r"^Mozilla/5\.0$", "apple_mpp"),
        (r"GoogleImageProxy", "google_image_proxy"),
        (r"YahooMailProxy", "yahoo_mail_proxy"),
        (r"Barracuda", "scanner_barracuda"),
        (r"Mimecast", "scanner_mimecast"),
        (r"Proofpoint|\bPPS\b", "scanner_proofpoint"),
        (r"SafeLinks|Microsoft Office|ms-office|MSOffice", "scanner_microsoft"),
        (r"HeadlessChrome|PhantomJS|Puppeteer|Playwright", "headless_browser"),
        (
            r"^curl/|^Wget/|python-requests|python-urllib|aiohttp|httpx|Go-http-client|"
            r"okhttp|Java/|libwww-perl|Apache-HttpClient",
            "http_library",
        ),
        (r"bot\b|crawler|spider|scanner|preview", "bot"),
    )
)

CLICK_AFTER_SEND_SECONDS = 10.0  # a person does not open, read and click this fast
BURST_LINKS = 3  # this many distinct links of one message clicked ...
BURST_SECONDS = 5.0  # ... within this many seconds: a scanner following every link


@dataclass(frozen=True)
class Facts:
    """What one open or click request tells about who made it."""

    method: str
    user_agent: str
    seconds_since_sent: float | None = None
    # Clicks only: distinct links of this message clicked in the last BURST_SECONDS,
    # this one included.
    recent_distinct_links: int = 0
    is_click: bool = False
    # The client's address as the server saw it (after a trusted proxy's X-Forwarded-For).
    ip: str | None = None


def classify(facts: Facts) -> tuple[bool, str | None]:
    """(machine, reason); (False, None) for a person."""
    if facts.method.upper() == "HEAD":
        return True, "head_request"
    agent = facts.user_agent.strip()
    if not agent:
        return True, "no_user_agent"
    for pattern, reason in USER_AGENT_RULES:
        if pattern.search(agent):
            return True, reason
    network = networks.shipped().lookup(facts.ip)
    if network is not None and network.applies(facts.is_click):
        return True, network.reason
    if facts.is_click:
        since = facts.seconds_since_sent
        if since is not None and since < CLICK_AFTER_SEND_SECONDS:
            return True, "click_right_after_send"
        if facts.recent_distinct_links >= BURST_LINKS:
            return True, "many_links_at_once"
    return False, None
