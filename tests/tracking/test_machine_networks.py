"""Opens and clicks from the networks of mail-privacy proxies and security scanners are
machines (postwise/tracking/data/machine_networks.toml), on both backends; the lookup
agrees with a plain scan of the ranges; X-Forwarded-For counts only from a trusted proxy."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from postwise.api.app import create_app
from postwise.core.settings import Settings
from postwise.storage.database import Database
from postwise.tracking import machines, networks
from postwise.tracking.tokens import TokenKind, TokenSigner
from postwise.workspaces.actions import NewWorkspace

from .test_email_tracking import BROWSER, SECRET, age, send, tracked

RESIDENTIAL_V4 = "81.2.69.142"  # a consumer broadband address, in no listed network
RESIDENTIAL_V6 = "2a02:c7c:1234:5600::17"
# Addresses taken from rows of Apple's published egress list (one per operator).
APPLE_RELAY = ["104.28.34.23", "146.75.168.32", "172.225.96.161", "2a04:4e41:800:4000::9",
               "2a02:26f7:e8c0:4000::1", "2606:54c3:0:777::1"]  # fmt: skip


def classify(ip: str, *, click: bool, agent: str = BROWSER) -> tuple[bool, str | None]:
    return machines.classify(
        machines.Facts("GET", agent, seconds_since_sent=3600.0, is_click=click, ip=ip)
    )


# --- the data file ------------------------------------------------------------------


def test_every_section_names_its_source_date_and_reason() -> None:
    shipped = networks.shipped().networks
    assert {n.name for n in shipped} >= {
        "apple_private_relay", "google", "yahoo", "microsoft", "mimecast", "proofpoint",
        "barracuda",
    }  # fmt: skip
    for network in shipped:
        assert network.source.strip() and network.cidrs and network.asns, network.name
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", network.source_date), network.name
        assert re.fullmatch(r"[a-z_]+(:[a-z]+)?", network.reason), network.name
        for cidr in network.cidrs:
            ipaddress.ip_network(cidr, strict=True)  # no host bits set by mistake
    families = {ipaddress.ip_network(c).version for n in shipped for c in n.cidrs}
    assert families == {4, 6}


@pytest.mark.parametrize("ip", APPLE_RELAY)
def test_apple_relay_rows_are_covered(ip: str) -> None:
    found = networks.shipped().lookup(ip)
    assert found is not None and found.name == "apple_private_relay"


def test_overlapping_sections_are_refused() -> None:
    text = """
    [[network]]
    name = "a"
    reason = "x"
    applies_to = "both"
    source = "s"
    source_date = "2026-01-01"
    cidrs = ["10.0.0.0/8"]
    [[network]]
    name = "b"
    reason = "y"
    applies_to = "opens"
    source = "s"
    source_date = "2026-01-01"
    cidrs = ["10.1.0.0/16"]
    """
    with pytest.raises(ValueError, match="overlap"):
        networks.NetworkMap(networks.parse(text))
    with pytest.raises(ValueError, match="applies_to"):
        networks.parse(text.replace('"opens"', '"sometimes"'))


def test_lookup_of_odd_input() -> None:
    shipped = networks.shipped()
    for ip in (None, "", "testclient", "300.1.1.1", "::ffff:not"):
        assert shipped.lookup(ip) is None
    mapped = shipped.lookup("::ffff:205.139.110.9")  # IPv4 seen on a dual-stack socket
    assert mapped is not None and mapped.name == "mimecast"


# A table of the shipped CIDRs, and addresses drawn near their edges as well as anywhere.
_CIDRS = [(ipaddress.ip_network(c), n) for n in networks.shipped().networks for c in n.cidrs]


@st.composite
def addresses(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        net, _ = draw(st.sampled_from(_CIDRS))
        edge = draw(st.sampled_from([-1, 0, 1]))
        base = int(net.network_address) if draw(st.booleans()) else int(net.broadcast_address)
        top = 2**32 - 1 if net.version == 4 else 2**128 - 1
        value = min(max(base + edge, 0), top)
        return str(
            ipaddress.IPv4Address(value) if net.version == 4 else ipaddress.IPv6Address(value)
        )
    if draw(st.booleans()):
        return str(ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1))))
    return str(ipaddress.IPv6Address(draw(st.integers(0, 2**128 - 1))))


@settings(max_examples=400, deadline=None)
@given(addresses())
def test_lookup_agrees_with_a_scan_of_every_range(ip: str) -> None:
    address = ipaddress.ip_address(ip)
    expected = [n.name for net, n in _CIDRS if address.version == net.version and address in net]
    found = networks.shipped().lookup(ip)
    assert ([found.name] if found else []) == expected


# --- the rule ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "click", "reason"),
    [
        ("205.139.110.77", True, "scanner_network:mimecast"),
        ("205.139.111.200", False, "scanner_network:mimecast"),
        ("148.163.150.10", True, "scanner_network:proofpoint"),
        ("67.231.149.1", True, "scanner_network:proofpoint"),
        ("40.107.22.99", True, "scanner_network:microsoft"),
        ("2a01:111:f403:c20a::5", True, "scanner_network:microsoft"),
        ("209.222.82.7", True, "scanner_network:barracuda"),
        ("66.249.84.101", False, "google_image_proxy_ip"),
        ("2a00:1450:4009:81f::200e", True, "google_image_proxy_ip"),
        ("98.137.11.163", False, "yahoo_proxy_ip"),
        ("172.225.96.161", False, "apple_mpp_ip"),
        ("2a04:4e41:800:4000::9", False, "apple_mpp_ip"),
        ("17.58.97.10", False, "apple_mpp_ip"),
    ],
)
def test_requests_from_listed_networks_are_machines_with_the_reason(
    ip: str, click: bool, reason: str
) -> None:
    assert classify(ip, click=click) == (True, reason)


@pytest.mark.parametrize("ip", [RESIDENTIAL_V4, RESIDENTIAL_V6, "203.0.113.9", "2001:db8::1"])
def test_a_browser_on_a_residential_address_is_a_person(ip: str) -> None:
    assert classify(ip, click=True) == (False, None)
    assert classify(ip, click=False) == (False, None)


@pytest.mark.parametrize("ip", APPLE_RELAY)
def test_a_click_through_private_relay_is_a_person_but_an_open_is_the_proxy(ip: str) -> None:
    assert classify(ip, click=True) == (False, None)
    assert classify(ip, click=False) == (True, "apple_mpp_ip")


def test_the_user_agent_reason_comes_first() -> None:
    assert classify("205.139.110.77", click=True, agent="curl/8.5.0") == (True, "http_library")


# --- through the app, both backends -----------------------------------------------------


def client_at(db: Database, tmp_path: Path, ip: str, *, proxy: bool = False) -> TestClient:
    settings_ = Settings(
        environment="test", data_dir=tmp_path, database_url=db.url, secret_key=SECRET
    )
    app = create_app(settings_, db)
    # What `postwise serve` runs: uvicorn rewrites the client from X-Forwarded-For only
    # when the peer is a trusted proxy (FORWARDED_ALLOW_IPS, default 127.0.0.1).
    asgi = ProxyHeadersMiddleware(app, trusted_hosts="127.0.0.1") if proxy else app
    return TestClient(asgi, follow_redirects=False, client=(ip, 40000))  # type: ignore[arg-type]


@pytest.fixture
def message(db: Database, acme: NewWorkspace) -> tuple[int, TokenSigner]:
    signer = TokenSigner(SECRET.encode())
    outbox_id, _, _ = send(db, signer, acme, "ann@corp.example")
    age(db, acme, outbox_id, 3600)
    return outbox_id, signer


def test_opens_and_clicks_from_scanner_and_proxy_networks_are_stored_as_machines(
    db: Database, tmp_path: Path, acme: NewWorkspace, message: tuple[int, TokenSigner]
) -> None:
    outbox_id, signer = message
    click = f"/c/{signer.sign(TokenKind.CLICK, outbox_id, 0)}"
    pixel = f"/o/{signer.sign(TokenKind.OPEN, outbox_id)}"
    for ip, path in [
        ("205.139.110.77", click),  # Mimecast
        ("2a01:111:f403:c20a::5", click),  # Microsoft EOP, IPv6
        ("172.225.96.161", pixel),  # Apple's relay fetching the image
        ("172.225.96.161", click),  # ... and a person clicking through Private Relay
        (RESIDENTIAL_V6, pixel),
        (RESIDENTIAL_V4, click),
    ]:
        with client_at(db, tmp_path, ip) as c:
            status = c.get(path, headers={"User-Agent": BROWSER}).status_code
            assert status == (302 if path == click else 200)
    got = [
        (e.name, e.context["ip"], e.properties["machine"], e.properties["machine_reason"])
        for e in tracked(db, acme)
    ]
    assert got == [
        ("Email Clicked", "205.139.110.77", True, "scanner_network:mimecast"),
        ("Email Clicked", "2a01:111:f403:c20a::5", True, "scanner_network:microsoft"),
        ("Email Opened", "172.225.96.161", True, "apple_mpp_ip"),
        ("Email Clicked", "172.225.96.161", False, None),
        ("Email Opened", RESIDENTIAL_V6, False, None),
        ("Email Clicked", RESIDENTIAL_V4, False, None),
    ]


def test_x_forwarded_for_counts_only_behind_a_trusted_proxy(
    db: Database, tmp_path: Path, acme: NewWorkspace, message: tuple[int, TokenSigner]
) -> None:
    outbox_id, signer = message
    click = f"/c/{signer.sign(TokenKind.CLICK, outbox_id, 0)}"
    forwarded = {"User-Agent": BROWSER, "X-Forwarded-For": "205.139.110.77"}
    with client_at(db, tmp_path, "127.0.0.1", proxy=True) as behind_proxy:
        assert behind_proxy.get(click, headers=forwarded).status_code == 302
    with client_at(db, tmp_path, RESIDENTIAL_V4, proxy=True) as direct:
        assert direct.get(click, headers=forwarded).status_code == 302  # a spoofed header
    got = [(e.context["ip"], e.properties["machine_reason"]) for e in tracked(db, acme)]
    assert got == [("205.139.110.77", "scanner_network:mimecast"), (RESIDENTIAL_V4, None)]
