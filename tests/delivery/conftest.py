"""A workspace with contacts, a list, and helpers to queue prebuilt messages."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from postwise.contacts import actions, lists
from postwise.delivery import outbox
from postwise.privacy.hashing import AddressHasher
from postwise.storage.database import Database
from postwise.workspaces.actions import create_workspace


@pytest.fixture
def hasher() -> AddressHasher:
    return AddressHasher.from_secret(b"delivery tests secret")


@dataclass(frozen=True)
class World:
    ws: int
    other_ws: int
    list_id: int
    contacts: dict[str, int]


def raw_message(rcpt: str, n: int = 0, size: int = 200) -> bytes:
    body = ("x" * 70 + "\r\n") * max(1, size // 72)
    return (
        f"From: Sender <sender@send.example>\r\nTo: {rcpt}\r\nSubject: test {n}\r\n"
        f"Message-ID: <m{n}.{rcpt}@send.example>\r\n\r\n.leading dot\r\n{body}"
    ).encode()


def queue_raw(
    db: Database,
    ws: int,
    emails: list[str],
    *,
    kind: str = "transactional",
    size: int = 200,
    **extra: object,
) -> list[int]:
    with db.tenant(ws) as s:
        return outbox.enqueue(
            s,
            [
                outbox.NewMessage(
                    email=e,
                    kind=kind,
                    raw=raw_message(e, i, size),
                    mail_from="bounces@send.example",
                    message_id=f"<m{i}.{e}@send.example>",
                    **extra,  # type: ignore[arg-type]
                )
                for i, e in enumerate(emails)
            ],
        )


@pytest.fixture
def world(db: Database) -> World:
    with db.system() as s:
        ws = create_workspace(s, "Acme").workspace_id
        other = create_workspace(s, "Globex").workspace_id
    ids: dict[str, int] = {}
    with db.tenant(ws) as s:
        news = lists.create_list(s, {"name": "News"})
        for email in ("ann@corp.example", "bob@corp.example", "cy@gmail.com"):
            contact, _ = actions.upsert_contact(s, {"email": email}, source="api")
            ids[email] = contact.id
            lists.subscribe(s, news.id, contact.id, lists.ConsentInput("api"), confirmed=True)
        list_id = news.id
    return World(ws, other, list_id, ids)
