"""``postwise demo load``: loads once, says so the second time, and its data can be browsed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postwise.cli.main import app
from postwise.core.settings import get_settings


def test_demo_loads_once_and_its_contacts_can_be_shown(runner: CliRunner) -> None:
    args = ["demo", "load", "--contacts", "120", "--companies", "12", "--seed", "5"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    loaded = json.loads(result.stdout)
    assert loaded["created"] is True
    assert loaded["api_key"].startswith("pw_sk_") and loaded["write_key"].startswith("pw_wk_")
    assert loaded["counts"]["contacts"] == 120 and loaded["counts"]["companies"] == 12
    workspace = loaded["workspace_id"]

    again = runner.invoke(app, [*args, "--json"])
    assert again.exit_code == 0
    assert json.loads(again.stdout) == {
        "workspace_id": workspace,
        "name": "Demo (Northwind B2B)",
        "created": False,
    }
    said = runner.invoke(app, args)
    assert "already loaded" in " ".join(said.stdout.split())

    listing = runner.invoke(app, ["contact", "list", "-w", workspace, "--limit", "1", "--json"])
    [first] = json.loads(listing.stdout)["data"]
    shown = runner.invoke(app, ["contact", "show", first["email"], "-w", workspace, "--json"])
    assert shown.exit_code == 0
    document = json.loads(shown.stdout)
    assert document["company"]["domain"] == first["email"].split("@")[1]
    assert document["attributes"]["lifecycle_stage"]


def test_demo_load_prints_keys_and_counts(runner: CliRunner) -> None:
    result = runner.invoke(app, ["demo", "load", "--contacts", "40", "--companies", "5", "--again"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "demo workspace 1 (Demo (Northwind B2B)) loaded" in out
    assert "admin API key (shown once): pw_sk_" in out and "contacts 40" in out


def test_demo_load_refuses_bad_sizes_and_an_unmigrated_database(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["demo", "load", "--contacts", "5", "--companies", "10"])
    assert result.exit_code == 2
    assert "contacts must be between" in " ".join(result.stderr.split())
    monkeypatch.setenv("POSTWISE_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    get_settings.cache_clear()
    result = runner.invoke(app, ["demo", "load"])
    assert result.exit_code == 1
    assert "run `postwise db upgrade` first" in " ".join(result.stderr.split())
