"""Deterministic B2B contact files for the benchmarks: any size, written in constant memory.

About nine in ten addresses are at one of ``rows // 8`` business domains (so companies
are created and shared), the rest at free-mail providers; every row names a company,
two declared attributes and a country. Row ``i`` is the same in every file, so a
smaller file is a prefix of a bigger one.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

HEADER = (
    "email", "first_name", "last_name", "job_title", "country", "company.name",
    "company.industry", "seats", "plan",
)  # fmt: skip
FIRST = ("Ann", "Bob", "Carla", "Dieter", "Eva", "Farid", "Greta", "Hugo", "Ines", "Jörg")
LAST = ("Müller", "Smith", "Rossi", "Dubois", "Nowak", "García", "Jensen", "Kowalski")
TITLES = ("CTO", "Head of Sales", "Engineer", "Marketing Manager", "CEO", "Buyer")
COUNTRIES = ("DE", "FR", "US", "GB", "NL", "PL", "ES", "IT")
INDUSTRIES = ("software", "retail", "manufacturing", "finance", "health")
PLANS = ("free", "team", "business", "enterprise")
FREE = ("gmail.com", "yahoo.com", "outlook.com", "gmx.de", "web.de")


def row(i: int, domains: int) -> list[str]:
    rng = random.Random(i)
    if rng.random() < 0.1:
        domain = FREE[i % len(FREE)]
        company = ""
    else:
        number = rng.randrange(max(domains, 1))
        domain = f"company{number}.example"
        company = f"Company {number}"
    return [
        f"person{i}@{domain}",
        rng.choice(FIRST),
        rng.choice(LAST),
        rng.choice(TITLES),
        rng.choice(COUNTRIES),
        company,
        rng.choice(INDUSTRIES) if company else "",
        str(rng.randrange(1, 500)),
        rng.choice(PLANS),
    ]


def write_contacts(path: Path, rows: int) -> Path:
    domains = max(rows // 8, 1)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for i in range(rows):
            writer.writerow(row(i, domains))
    return path
