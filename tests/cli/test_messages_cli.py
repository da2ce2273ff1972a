"""``postwise dkim generate`` and ``postwise template ...`` through the real CLI parser,
with the generated key verified by dkimpy against the record the command printed."""

from __future__ import annotations

import re
from pathlib import Path

import dkim as dkimpy
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from postwise.cli.main import app
from postwise.core.errors import ValidationFailed
from postwise.core.settings import get_settings
from postwise.messages import keys
from postwise.messages.pipeline import Delivery, MessageBuilder, Recipient, Sender
from postwise.messages.store import compiled, list_templates
from postwise.messages.templates import TemplateSource, compile_template
from postwise.storage.database import Database
from postwise.storage.tables import DkimKeyRecord
from postwise.tracking.tokens import TokenSigner
from postwise.workspaces.actions import create_workspace


@pytest.fixture
def ws(db: Database) -> int:
    with db.system() as s:
        return create_workspace(s, "Acme").workspace_id


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_generate_prints_a_record_that_verifies(
    runner: CliRunner, db: Database, ws: int, algorithm: str
) -> None:
    args = ["dkim", "generate", "-w", str(ws), "--domain", "Mail.Acme.example"]
    result = runner.invoke(app, [*args, "--selector", "s2026", "--algorithm", algorithm])
    assert result.exit_code == 0, result.output
    match = re.search(r"^(\S+)\. IN TXT \( (.+) \)$", result.output, re.M)
    assert match and match.group(1) == "s2026._domainkey.mail.acme.example"
    strings = re.findall(r'"([^"]*)"', match.group(2))
    assert all(len(s) <= 255 for s in strings) and len(strings) == (2 if algorithm == "rsa" else 1)
    record = "".join(strings).encode()

    with db.tenant(ws) as s:
        stored = s.scalar(select(DkimKeyRecord))
        assert stored is not None and b"PRIVATE KEY" not in stored.private_key
        signing = keys.signing_keys(s, get_settings().resolved_secret_key(), "mail.acme.example")
    sender = Sender(
        from_address="news@mail.acme.example",
        sending_domain="mail.acme.example",
        bounce_domain="bounce.acme.example",
        base_url="https://t.acme.example",
        postal_address="1 Main St",
        dkim=signing,
    )
    message = MessageBuilder(TokenSigner(b"k")).build(
        compile_template(TemplateSource(subject="Hi", html="<p>Hello</p>")),
        Recipient(email="ann@corp.example"),
        sender,
        Delivery(message_id=1, workspace_id=ws),
    )
    published = {b"s2026._domainkey.mail.acme.example.": record}
    assert dkimpy.verify(message.data, dnsfunc=lambda name, timeout=5: published.get(name))

    again = runner.invoke(app, [*args, "--selector", "s2026"])
    assert again.exit_code == 2 and "already has a key" in again.output


def test_keys_need_the_secret_they_were_made_with(db: Database, ws: int) -> None:
    with db.tenant(ws) as s:
        keys.generate_dkim_key(s, b"one", domain="acme.example", selector="a", algorithm="ed25519")
    with db.tenant(ws) as s, pytest.raises(ValidationFailed) as err:
        keys.signing_keys(s, b"two", "acme.example")
    assert err.value.code == "dkim_key_unreadable"


def test_bad_input_is_refused(runner: CliRunner, ws: int) -> None:
    result = runner.invoke(
        app, ["dkim", "generate", "-w", str(ws), "-d", "not a domain", "-s", "x", "-a", "dsa"]
    )
    assert result.exit_code == 2 and "rsa or ed25519" in result.output


def test_starters_and_validate(runner: CliRunner, db: Database, ws: int, tmp_path: Path) -> None:
    result = runner.invoke(app, ["template", "add-starters", "-w", str(ws)])
    assert result.exit_code == 0, result.output
    with db.tenant(ws) as s:
        rows = list_templates(s)
        assert sorted(r.name for r in rows) == ["Newsletter", "Receipt", "Welcome"]
        assert all(compiled(r).html_source for r in rows)
    bad = tmp_path / "bad.html"
    bad.write_text("<p>fine</p>\n<p>{{ contact.nmae }}</p>\n")
    result = runner.invoke(app, ["template", "validate", str(bad), "--subject", "s", "-w", str(ws)])
    assert result.exit_code == 2 and "html:2: Unknown field contact.nmae" in result.output
