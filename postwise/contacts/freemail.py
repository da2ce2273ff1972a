"""Free-mail and ISP domains, whose users are people, not companies.

The list ships as ``data/free_email_domains.txt`` (source and licence in
``data/FREE_EMAIL_DOMAINS_LICENSE.md``); it is read once, on first use.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def free_mail_domains() -> frozenset[str]:
    text = resources.files("postwise.contacts").joinpath("data/free_email_domains.txt").read_text()
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def is_free_mail(domain: str) -> bool:
    return domain.lower() in free_mail_domains()
