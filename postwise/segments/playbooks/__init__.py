"""Playbook segments shipped as examples: one JSON file each (name, description, definition).

They double as definition files for the CLI (``postwise segment preview FILE.json``)
and are seeded with ``postwise segment seed-playbooks -w ID``. Each is tested against a
fixture whose members are known, near-misses included (tests/segments/test_playbooks.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from postwise.storage.tables import Segment

KEYS = (
    "high_value_customers",
    "cart_abandoners",
    "product_interest",
    "inactive",
    "enterprise_decision_makers",
    "trial_not_purchased",
    "new_subscribers",
)


@dataclass(frozen=True)
class Playbook:
    key: str
    name: str
    description: str
    definition: dict[str, Any]


def load(key: str) -> Playbook:
    if key not in KEYS:
        raise KeyError(key)
    raw = json.loads(resources.files(__package__).joinpath(f"{key}.json").read_text("utf-8"))
    return Playbook(key, raw["name"], raw["description"], raw["definition"])


def all_playbooks() -> list[Playbook]:
    return [load(key) for key in KEYS]


def seed(session: Session, *, refresh: bool = True) -> list[Segment]:
    """Save every playbook whose name the workspace does not use yet; the new rows."""
    from postwise.segments import store

    taken = set(session.scalars(select(Segment.name)))
    saved = []
    for book in all_playbooks():
        if book.name in taken:
            continue
        saved.append(
            store.create_segment(
                session,
                store.SegmentInput(
                    name=book.name, description=book.description, definition=book.definition
                ),
                refresh=refresh,
            )
        )
    return saved
