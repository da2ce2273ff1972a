"""``/t.js`` is served cacheably, and the ``/v1/`` API (only it) answers browsers' CORS."""

from __future__ import annotations

from fastapi.testclient import TestClient

from postwise import __version__
from postwise.tracking.snippet import VERSION_MARK, etag_matches, snippet


def test_the_snippet_is_javascript_with_a_validator(api: TestClient) -> None:
    response = api.get("/t.js", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=3600"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["vary"] == "Accept-Encoding"
    assert "content-encoding" not in response.headers
    etag = response.headers["etag"]
    assert etag == snippet().plain.etag and etag.startswith('"')
    body = response.text
    assert f'version: "{__version__}"' in body and VERSION_MARK not in body
    assert "window.postwise" in body and "/v1/batch" in body

    again = api.get(
        "/t.js", headers={"If-None-Match": f'W/{etag}, "other"', "Accept-Encoding": "identity"}
    )
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    assert api.get("/t.js", headers={"If-None-Match": '"stale"'}).status_code == 200


def test_gzip_is_served_to_clients_that_take_it(api: TestClient) -> None:
    plain = api.get("/t.js", headers={"Accept-Encoding": "identity"})
    for accept in ("gzip", "br, gzip;q=0.5", "*"):
        response = api.get("/t.js", headers={"Accept-Encoding": accept})
        assert response.headers["content-encoding"] == "gzip", accept
        assert response.content == plain.content  # httpx decodes it
        assert response.headers["etag"] != plain.headers["etag"]
        assert int(response.headers["content-length"]) < len(plain.content) / 2
    refused = api.get("/t.js", headers={"Accept-Encoding": "gzip;q=0, br"})
    assert "content-encoding" not in refused.headers
    etag = snippet().gzipped.etag
    cached = api.get("/t.js", headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
    assert cached.status_code == 304 and cached.headers["etag"] == etag


def test_etag_comparison_is_weak_and_lists_are_split() -> None:
    assert etag_matches('"a"', '"a"') and etag_matches('W/"a"', '"a"')
    assert etag_matches('"b" , "a"', '"a"') and etag_matches("*", '"a"')
    assert not etag_matches(None, '"a"') and not etag_matches('"ab"', '"a"')


def test_v1_answers_preflight_and_adds_the_allow_origin(api: TestClient) -> None:
    preflight = api.options(
        "/v1/batch",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert int(preflight.headers["access-control-max-age"]) > 0

    post = api.post(
        "/v1/batch",
        content=b'{"batch": [], "writeKey": "pw_wk_unknown"}',
        headers={"Origin": "https://shop.example", "Content-Type": "text/plain"},
    )
    # Refused (unknown key), and still readable by the page that sent it.
    assert post.status_code == 401
    assert post.headers["access-control-allow-origin"] == "*"
    assert "retry-after" in post.headers["access-control-expose-headers"].lower()


def test_the_management_api_stays_closed_to_other_origins(api: TestClient) -> None:
    preflight = api.options(
        "/api/contacts",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    read = api.get("/api/contacts", headers={"Origin": "https://evil.example"})
    assert read.status_code == 200 and "access-control-allow-origin" not in read.headers
