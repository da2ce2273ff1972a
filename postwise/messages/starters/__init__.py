"""Starter templates shipped with Postwise: welcome, newsletter, transactional receipt.

Each is ``NAME.json`` (name, kind, subject, preheader) beside ``NAME.html``; every one is
scored by SpamAssassin in the tests. ``sample_data`` gives the data each one expects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from postwise.messages.templates import TemplateSource

NAMES = ("welcome", "newsletter", "receipt")


@dataclass(frozen=True)
class Starter:
    key: str
    name: str
    kind: str
    source: TemplateSource


def load(key: str) -> Starter:
    if key not in NAMES:
        raise KeyError(key)
    folder = resources.files(__package__)
    meta = json.loads(folder.joinpath(f"{key}.json").read_text("utf-8"))
    html = folder.joinpath(f"{key}.html").read_text("utf-8")
    source = TemplateSource(subject=meta["subject"], preheader=meta["preheader"], html=html)
    return Starter(key=key, name=meta["name"], kind=meta["kind"], source=source)


def sample_data(key: str, articles: int = 6) -> dict[str, Any]:
    """Realistic data for previews, tests and the benchmark."""
    if key == "newsletter":
        topics = json.loads(resources.files(__package__).joinpath("articles.json").read_text())
        items = []
        for i in range(articles):
            topic = topics[i % len(topics)]
            slug = topic["title"].lower().replace(" ", "-")
            items.append({**topic, "url": f"https://www.acme.example/blog/{i + 1}-{slug}"})
        return {
            "issue_title": "The Acme monthly: exports, sign-on and two conferences",
            "articles": items,
        }
    if key == "receipt":
        return {
            "order_id": "A-10482",
            "date": "2 March 2026",
            "currency": "EUR",
            "total": "1,180.00",
            "card_last4": "4242",
            "items": [
                {"quantity": 2, "name": "Team plan seat (annual)", "total": "960.00"},
                {"quantity": 1, "name": "Onboarding session", "total": "220.00"},
            ],
        }
    return {}
