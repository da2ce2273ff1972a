"""A campaign message (the "welcome" starter as a marketing template) as the campaigns
package sends it (fan-out into the outbox, the worker's build with the workspace DKIM
key, the capture transport), scored by SpamAssassin like the starters in
``test_spamassassin.py``."""

from __future__ import annotations

import subprocess
from pathlib import Path

from postwise.campaigns import lifecycle, store
from postwise.core.settings import Settings
from postwise.delivery.transports.maildir import list_captured, read_captured
from postwise.messages import starters
from postwise.messages import store as templates
from postwise.storage.database import Database
from tests.campaigns.conftest import base_campaign, drain, make_world
from tests.campaigns.conftest import settings as settings

from .test_spamassassin import _RULE, SPAMASSASSIN, STRUCTURAL


def test_campaign_message_scores_clean(db: Database, settings: Settings, tmp_path: Path) -> None:
    assert SPAMASSASSIN is not None
    world = make_world(db)
    starter = starters.load("welcome")
    with db.tenant(world.ws) as s:
        template = templates.create_template(
            s,
            templates.TemplateInput(
                name="Demo",
                subject=starter.source.subject,
                kind="marketing",
                preheader=starter.source.preheader,
                html=starter.source.html,
                text=starter.source.text,
                mjml=starter.source.mjml,
            ),
        )
        campaign = store.create_campaign(
            s,
            base_campaign(
                world, template_id=template.id, audience={"sources": [{"list": world.list_id}]}
            ),
        )
        lifecycle.schedule(s, campaign.id)
    drain(db)
    captured = list_captured(settings.resolved_capture_dir(), world.ws)
    assert captured, "the campaign sent nothing"
    raw = read_captured(settings.resolved_capture_dir(), world.ws, captured[0].name)
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw
    assert b"DKIM-Signature:" in raw
    done = subprocess.run(
        [SPAMASSASSIN, "-L", "-t"],
        input=raw,
        capture_output=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        check=False,
    )
    report = done.stdout.decode("utf-8", "replace")
    details = report.split("Content analysis details:", 1)
    assert len(details) == 2, f"no SpamAssassin report: {done.stderr.decode()[-2000:]}"
    total = float(details[1].split("(", 1)[1].split(" points", 1)[0])
    table = details[1].split("\n\n", 2)[1] if "\n\n" in details[1] else details[1]
    fired = {name: float(points) for points, name in _RULE.findall(table)}
    structural = sorted(n for n in fired if n.startswith(STRUCTURAL))
    assert not structural, f"structural rules fired: {structural}\n{table}"
    assert total < 2.0, f"scored {total}\n{table}"
