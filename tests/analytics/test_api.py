"""``/api/analytics`` over HTTP: the report, breakdowns, series, CSV; another key gets 404."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from postwise.analytics import rollup
from postwise.api.app import create_app
from postwise.core.settings import Settings
from postwise.storage.database import Database

from .conftest import EXPECTED, T0, World, standard_events


def test_campaign_routes_read_the_rollups(db: Database, world: World, tmp_path: Path) -> None:
    with db.tenant(world.ws) as s:
        s.add_all(standard_events(world))
    with db.tenant(world.ws) as s:
        rollup.roll_up(s, now=T0 + timedelta(days=1))
    settings = Settings(data_dir=tmp_path, secret_key="analytics-test-secret")
    cid = world.campaign_id
    with TestClient(create_app(settings, db)) as client:
        ours = {"Authorization": f"Bearer {world.api_key}"}
        theirs = {"Authorization": f"Bearer {world.other_api_key}"}
        r = client.get(f"/api/analytics/campaigns/{cid}", headers=ours)
        assert r.status_code == 200, r.text
        assert {k: r.json()["totals"][k] for k in EXPECTED} == EXPECTED
        r = client.get(f"/api/analytics/campaigns/{cid}/breakdown?dimension=variant", headers=ours)
        assert [row["id"] for row in r.json()["data"]] == ["A", "B"]
        daily = client.get(f"/api/analytics/campaigns/{cid}/series?interval=day", headers=ours)
        hourly = client.get(f"/api/analytics/campaigns/{cid}/series", headers=ours)
        assert len(daily.json()["data"]) == 1 and len(hourly.json()["data"]) == 3
        assert daily.json()["data"][0]["opens_human"] == 3
        r = client.get(f"/api/analytics/campaigns/{cid}/export.csv?dimension=domain", headers=ours)
        assert r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert {row["id"]: int(row["sent"]) for row in rows} == {
            "alpha.example": 4,
            "beta.example": 4,
        }
        assert client.get(f"/api/analytics/campaigns/{cid}", headers=theirs).status_code == 404
        bad = client.get(f"/api/analytics/campaigns/{cid}/breakdown?dimension=x", headers=ours)
        assert bad.status_code in (400, 422)
