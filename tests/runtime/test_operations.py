"""Health, metrics and the per-request id and log line."""

from __future__ import annotations

import re

import structlog
from fastapi.testclient import TestClient

from postwise.api.app import create_app
from postwise.core.settings import Settings
from postwise.storage.database import Database


def test_healthz_answers_ok_when_the_database_does(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_healthz_is_503_problem_when_the_database_is_down() -> None:
    down = Database("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    try:
        with TestClient(create_app(Settings(environment="test"), down)) as client:
            response = client.get("/healthz")
    finally:
        down.dispose()
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "database_unavailable"


def counter(text: str, route: str, status: str) -> float:
    pattern = (
        r'^postwise_http_requests_total\{method="GET",route="'
        + re.escape(route)
        + r'",status="'
        + status
        + r'"\} (\S+)$'
    )
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_requests_by_route_template(client: TestClient) -> None:
    route = "/api/captured-messages/{message_id}"
    before = counter(client.get("/metrics").text, route, "401")
    assert client.get("/api/captured-messages/12345").status_code == 401
    assert client.get("/api/captured-messages/67890").status_code == 401
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    assert counter(response.text, route, "401") == before + 2
    assert "postwise_http_request_duration_seconds_bucket" in response.text
    assert "/api/captured-messages/12345" not in response.text


def test_unknown_paths_share_one_series(client: TestClient) -> None:
    before = counter(client.get("/metrics").text, "<unmatched>", "404")
    client.get("/no/such/page")
    client.get("/another/one")
    assert counter(client.get("/metrics").text, "<unmatched>", "404") == before + 2


def test_each_request_gets_an_id_logged_on_one_line(client: TestClient) -> None:
    with structlog.testing.capture_logs([structlog.contextvars.merge_contextvars]) as logs:
        first = client.get("/api/captured-messages")
        second = client.get("/api/captured-messages", headers={"X-Request-ID": "edge-42"})
        hostile = client.get("/api/captured-messages", headers={"X-Request-ID": "a b\x01"})
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["x-request-id"])
    assert second.headers["x-request-id"] == "edge-42"
    assert hostile.headers["x-request-id"] != "a b\x01"
    lines = [e for e in logs if e["event"] == "http request"]
    assert [e["request_id"] for e in lines] == [
        first.headers["x-request-id"],
        "edge-42",
        hostile.headers["x-request-id"],
    ]
    assert lines[0] | {"duration_ms": 0} == {
        "event": "http request",
        "log_level": "info",
        "method": "GET",
        "path": "/api/captured-messages",
        "route": "/api/captured-messages",
        "status": 401,
        "duration_ms": 0,
        "request_id": first.headers["x-request-id"],
    }
