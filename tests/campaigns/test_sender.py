"""A campaign's own sender on every message: each variant's From name, the Reply-To, and a
DKIM signature by the campaign's sending domain that verifies; bad senders are refused."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.headerregistry import Address

import dkim as dkimpy
import pytest
from sqlalchemy import select

from postwise.campaigns import lifecycle, store
from postwise.core.errors import ValidationFailed
from postwise.core.settings import Settings
from postwise.delivery.transports.maildir import list_captured, read_captured
from postwise.messages import keys
from postwise.storage.database import Database
from postwise.storage.tables import OutboxMessage

from .conftest import SECRET, World, base_campaign, drain


def test_each_variant_is_sent_from_its_own_name_signed_by_the_campaign_domain(
    db: Database, world: World, settings: Settings
) -> None:
    with db.tenant(world.ws) as s:
        _, txt = keys.generate_dkim_key(
            s, SECRET.encode(), domain="mail.acme.example", selector="camp"
        )
        c = store.create_campaign(
            s,
            base_campaign(
                world,
                sending_domain="mail.acme.example",
                from_address="hello@mail.acme.example",
                from_name="Acme",
                reply_to="team@acme.example",
                ab={"test_share": 1.0, "metric": "open_rate", "fallback": "send_a"},
                variants=[
                    {"key": "A", "from_name": "Ann at Acme"},
                    {"key": "B", "from_name": "The Acme Team"},
                ],
            ),
        )
        lifecycle.schedule(s, c.id)
    drain(db)
    record = "".join(txt).encode()

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"camp._domainkey.mail.acme.example." else None

    with db.tenant(world.ws) as s:
        variant_of = {o.id: o.data.get("variant") for o in s.scalars(select(OutboxMessage))}
    captured = list_captured(settings.resolved_capture_dir(), world.ws, limit=1000)
    assert captured and len(captured) == len(variant_of)
    names = {"A": "Ann at Acme", "B": "The Acme Team"}
    seen = set()
    for item in captured:
        raw = read_captured(settings.resolved_capture_dir(), world.ws, item.name)
        msg = message_from_bytes(raw, policy=policy.default)
        sender: Address = msg["From"].addresses[0]
        variant = variant_of[item.outbox_id]
        assert (sender.display_name, sender.addr_spec) == (
            names[str(variant)],
            "hello@mail.acme.example",
        )
        assert msg["Reply-To"].addresses[0].addr_spec == "team@acme.example"
        signature = dkimpy.DKIM(raw)
        assert signature.verify(dnsfunc=dns)
        assert b"d=mail.acme.example" in raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"")
        seen.add(variant)
    assert seen == {"A", "B"}


@pytest.mark.parametrize(
    ("values", "code", "field"),
    [
        ({"from_address": "not an address"}, "invalid_sender", "from_address"),
        ({"reply_to": "team@@acme"}, "invalid_sender", "reply_to"),
        ({"from_address": "news@elsewhere.example"}, "sender_unaligned", "from_address"),
    ],
)
def test_an_invalid_sender_is_refused_at_schedule_time(
    db: Database, world: World, values: dict[str, str], code: str, field: str
) -> None:
    with db.tenant(world.ws) as s:
        c = store.create_campaign(s, base_campaign(world, **values))
        with pytest.raises(ValidationFailed) as err:
            lifecycle.schedule(s, c.id)
        assert (err.value.code, err.value.field) == (code, field)
        assert store.get_campaign(s, c.id).status == "draft"
