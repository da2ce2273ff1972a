"""``postwise report campaign`` through the real CLI: the table, --json, --html; and the
HTML page rendered by Chromium with its charts present and no request leaving the page."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from postwise.analytics import rollup
from postwise.cli.main import app
from postwise.storage.database import Database

from .conftest import EXPECTED, T0, World, standard_events

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def rolled(db: Database, world: World) -> World:
    from datetime import timedelta

    with db.tenant(world.ws) as s:
        s.add_all(standard_events(world))
    with db.tenant(world.ws) as s:
        rollup.roll_up(s, now=T0 + timedelta(days=1))
    return world


def test_table_json_and_unknown_campaign(cli_runner: CliRunner, rolled: World) -> None:
    w = ["-w", str(rolled.ws)]
    out = cli_runner.invoke(app, ["report", "campaign", "launch", *w])
    assert out.exit_code == 0, out.output
    assert "unique opens" in out.output and "machine" in out.output
    out = cli_runner.invoke(app, ["report", "campaign", str(rolled.campaign_id), *w, "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert {k: doc["totals"][k] for k in EXPECTED} == EXPECTED
    assert doc["kpis"]["open_rate"] == pytest.approx(0.25)
    out = cli_runner.invoke(app, ["report", "campaign", "nope", *w])
    assert out.exit_code == 2
    other = cli_runner.invoke(app, ["report", "campaign", "launch", "-w", str(rolled.other_ws)])
    assert other.exit_code == 2


def test_rollup_command_counts_then_queues_the_job(
    cli_runner: CliRunner, db: Database, world: World
) -> None:
    with db.tenant(world.ws) as s:
        s.add_all(standard_events(world))
    out = cli_runner.invoke(app, ["report", "rollup", "-w", str(world.ws), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == {"events": 26, "batches": 1}
    out = cli_runner.invoke(app, ["report", "campaign", "launch", "-w", str(world.ws), "--json"])
    assert json.loads(out.output)["totals"]["sent"] == 8


def test_html_report_renders_charts_in_chromium_without_external_requests(
    cli_runner: CliRunner, rolled: World, tmp_path: Path
) -> None:
    page_path = tmp_path / "report.html"
    out = cli_runner.invoke(
        app, ["report", "campaign", "launch", "-w", str(rolled.ws), "--html", str(page_path)]
    )
    assert out.exit_code == 0, out.output
    html = page_path.read_text(encoding="utf-8")
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    # Delivery by class and people beside machines, as table rows (EXPECTED in conftest).
    assert "<td>Hard bounces</td><td>1</td>" in html
    assert "<td>Filter blocked</td><td>1</td>" in html
    assert "<td>Unique opens</td><td>2</td><td>1</td>" in html
    assert "<td>Clicks</td><td>1</td><td>1</td>" in html
    sync_api = pytest.importorskip("playwright.sync_api")
    if shutil.which(CHROMIUM) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} is not installed")
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        try:
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_path.as_uri())
            charts: dict[str, Any] = page.evaluate(
                """() => ({
                funnel: document.querySelectorAll('svg.funnel rect').length,
                opensHuman: document.querySelectorAll('svg.opens rect.human').length,
                opensMachine: document.querySelectorAll('svg.opens rect.machine').length,
                variants: document.querySelectorAll('svg.variants circle').length,
                domains: document.querySelectorAll('table.domains tr').length,
                width: document.querySelector('svg.funnel').getBoundingClientRect().width,
            })"""
            )
        finally:
            browser.close()
    assert charts["funnel"] == 5
    assert charts["opensHuman"] == charts["opensMachine"] >= 2
    assert charts["variants"] == 2 and charts["domains"] == 3 and charts["width"] > 100
    assert requests == [page_path.as_uri()]
