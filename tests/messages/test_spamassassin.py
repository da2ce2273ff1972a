"""Every shipped starter template, built as it would be sent, scored by SpamAssassin.

Local tests only (``-L``: no network). The test fails when a rule about message
structure, missing or malformed headers, HTML forms or the image/text ratio fires, or
when the total reaches 2.0. ``.ci/run`` installs Debian's ``spamassassin``; outside CI a
machine without it skips this test and says why.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from postwise.messages import dkim, starters
from postwise.messages.pipeline import Delivery, MessageBuilder, Recipient, Sender
from postwise.messages.templates import compile_template
from postwise.tracking.tokens import TokenSigner

SPAMASSASSIN = shutil.which("spamassassin")
if SPAMASSASSIN is None and os.environ.get("CI") != "true":
    pytest.skip(
        "spamassassin is not installed (apt-get install spamassassin)", allow_module_level=True
    )

# Rule name prefixes that mean the message itself is built wrong.
STRUCTURAL = (
    "MIME_", "MPART_", "MISSING_", "INVALID_", "MALFORMED", "HEADER_", "HTML_IMAGE_",
    "HTML_FORM", "HTML_MIME_NO_HTML_TAG", "HTML_TAG_", "HTML_SHORT", "HTML_OBFUSCATE",
    "FONT_INVIS", "LIST_PARTIAL", "NO_HEADERS", "TVD_", "FORGED_", "MSGID_", "DATE_IN_",
    "EMPTY_MESSAGE", "BAD_ENC", "CHARSET_", "SUBJ_",
)  # fmt: skip
_RULE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s", re.M)


@pytest.mark.parametrize("key", starters.NAMES)
def test_starter_template_scores_clean(key: str, tmp_path: Path) -> None:
    assert SPAMASSASSIN is not None, "CI must install spamassassin (.ci/run)"
    starter = starters.load(key)
    key_rsa = dkim.load_key(dkim.generate_private_key("rsa"), domain="acme.example", selector="s")
    sender = Sender(
        from_address="news@acme.example",
        from_name="Acme News",
        reply_to="hello@acme.example",
        sending_domain="acme.example",
        bounce_domain="bounce.acme.example",
        base_url="https://t.acme.example",
        postal_address="Acme Ltd, 1 Main Street, Springfield",
        workspace_name="Acme",
        dkim=(key_rsa,),
    )
    recipient = Recipient(
        email="ann.lee@corp.example",
        contact_id=12,
        name="Ann Lee",
        fields={"first_name": "Ann", "last_name": "Lee", "email": "ann.lee@corp.example"},
        company={"name": "Corp Inc"},
        tracking_consent=True,
    )
    delivery = Delivery(
        message_id=4711,
        workspace_id=3,
        kind="transactional" if starter.kind == "transactional" else "marketing",
        campaign="march",
        utm={"utm_source": "postwise", "utm_medium": "email"},
        data=starters.sample_data(key),
    )
    message = MessageBuilder(TokenSigner(b"secret")).build(
        compile_template(starter.source), recipient, sender, delivery
    )
    done = subprocess.run(
        [SPAMASSASSIN, "-L", "-t"],
        input=message.data,
        capture_output=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
        check=False,
    )
    report = done.stdout.decode("utf-8", "replace")
    details = report.split("Content analysis details:", 1)
    assert len(details) == 2, f"no SpamAssassin report: {done.stderr.decode()[-2000:]}"
    total = float(re.search(r"\((-?[\d.]+) points", details[1]).group(1))  # type: ignore[union-attr]
    table = details[1].split("\n\n", 2)[1] if "\n\n" in details[1] else details[1]
    fired = {name: float(points) for points, name in _RULE.findall(table)}
    structural = sorted(n for n in fired if n.startswith(STRUCTURAL))
    assert not structural, f"{key}: structural rules fired: {structural}\n{table}"
    assert total < 2.0, f"{key}: scored {total}\n{table}"
