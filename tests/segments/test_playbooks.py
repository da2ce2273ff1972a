"""The shipped playbook segments on a fixture whose members are known, near-misses
included (machine opens, an order after the cart, a total of exactly $500, ...): the
compiled SQL, the in-memory evaluator and the stored membership after a refresh all
name exactly the expected contacts, on both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection

from postwise.segments import membership, playbooks
from postwise.storage.database import Database
from tests.segments import seeding
from tests.segments.seeding import NOW

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


class Fixture:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.ws = seeding.workspace(conn)
        self.ids: dict[str, int] = {}

    def person(self, name: str, **values: Any) -> int:
        values.setdefault("created_at", NOW - 400 * DAY)
        self.ids[name] = seeding.contact(self.conn, self.ws, f"{name}@people.example", **values)
        return self.ids[name]

    def did(self, who: str, event: str, ago: timedelta, **properties: Any) -> None:
        seeding.event(self.conn, self.ws, self.ids[who], event, NOW - ago, properties)

    def opened(self, name: str, ago: timedelta, *, machine: bool = False, n: int = 1) -> None:
        for i in range(n):
            seeding.event(
                self.conn, self.ws, self.ids[name], "Email Opened", NOW - ago - i * HOUR,
                {"outbox_id": 1, "machine": machine}, type_="email",
            )  # fmt: skip

    def clicked(self, name: str, ago: timedelta, url: str, *, machine: bool = False) -> None:
        seeding.event(
            self.conn, self.ws, self.ids[name], "Email Clicked", NOW - ago,
            {"outbox_id": 1, "url": url, "machine": machine}, type_="email",
        )  # fmt: skip

    def names(self, *names: str) -> set[int]:
        return {self.ids[n] for n in names}


def build(conn: Connection) -> tuple[Fixture, dict[str, set[int]]]:
    f = Fixture(conn)
    # High-value customers: > $500 in orders over a year, 5+ human opens in 30 days, VIP page.
    for name in ("hv_yes", "hv_old_order", "hv_machine", "hv_no_vip", "hv_exact_500"):
        f.person(name)
    f.did("hv_yes", "Order Completed", 100 * DAY, total=300)
    f.did("hv_yes", "Order Completed", 10 * DAY, total=250.5)
    f.did("hv_old_order", "Order Completed", 400 * DAY, total=900)
    f.did("hv_old_order", "Order Completed", 5 * DAY, total=100)
    f.did("hv_machine", "Order Completed", 20 * DAY, total=700)
    f.did("hv_no_vip", "Order Completed", 20 * DAY, total=700)
    f.did("hv_exact_500", "Order Completed", 20 * DAY, total=500)
    for name in ("hv_yes", "hv_old_order", "hv_no_vip", "hv_exact_500"):
        f.opened(name, 2 * DAY, n=5)
    f.opened("hv_machine", 2 * DAY, n=4)
    f.opened("hv_machine", 1 * DAY, machine=True, n=3)  # Apple MPP: must not count
    for name in ("hv_yes", "hv_old_order", "hv_machine", "hv_exact_500"):
        f.did(name, "Page Viewed", 50 * DAY, path="/rewards/vip", title="VIP rewards")
    f.did("hv_no_vip", "Page Viewed", 3 * DAY, path="/rewards", title="Rewards")

    # Cart abandoners: added to cart in the last 24 hours, no order since.
    for name in ("cart_yes", "cart_ordered", "cart_old", "cart_order_before"):
        f.person(name)
    f.did("cart_yes", "Product Added", 2 * HOUR, sku="B-1")
    f.did("cart_ordered", "Product Added", 5 * HOUR, sku="B-1")
    f.did("cart_ordered", "Order Completed", 1 * HOUR, total=20)
    f.did("cart_old", "Product Added", 30 * HOUR, sku="B-1")
    f.did("cart_order_before", "Order Completed", 10 * HOUR, total=20)
    f.did("cart_order_before", "Product Added", 3 * HOUR, sku="B-2")

    # Product interest: 3+ Science Fiction views in 30 days and a human click on such a link.
    for name in ("pi_yes", "pi_two_views", "pi_machine_click", "pi_old_views"):
        f.person(name)
    sf = {"category": "Science Fiction"}
    for day in (1, 2, 3):
        f.did("pi_yes", "Product Viewed", day * DAY, **sf)
        f.did("pi_machine_click", "Product Viewed", day * DAY, **sf)
        f.did("pi_old_views", "Product Viewed", (40 + day) * DAY, **sf)
    f.did("pi_two_views", "Product Viewed", 1 * DAY, **sf)
    f.did("pi_two_views", "Product Viewed", 2 * DAY, **sf)
    f.did("pi_two_views", "Product Viewed", 3 * DAY, category="Fantasy")
    link = "https://shop.example/science-fiction/dune"
    for name in ("pi_yes", "pi_two_views", "pi_old_views"):
        f.clicked(name, 4 * DAY, link)
    f.clicked("pi_machine_click", 4 * DAY, link, machine=True)  # a link scanner

    # Inactive: no human open or click in 90 days.
    for name in ("quiet_machine_only", "quiet_old_open", "active_click_89d"):
        f.person(name)
    f.opened("quiet_machine_only", 3 * DAY, machine=True, n=2)
    f.opened("quiet_old_open", 91 * DAY)
    f.clicked("active_click_89d", 89 * DAY, "https://shop.example/")

    # Enterprise decision makers: > 1,000 employees, software, director or above.
    big_soft = seeding.company(conn, f.ws, "bigsoft.example", industry="Software",
                               employee_count=2000)  # fmt: skip
    cloud = seeding.company(conn, f.ws, "cloud.example", industry="SaaS", employee_count=5000)
    small = seeding.company(conn, f.ws, "smallsoft.example", industry="Software",
                            employee_count=1000)  # fmt: skip
    bank = seeding.company(conn, f.ws, "bank.example", industry="Banking", employee_count=50000)
    f.person("ent_director", company_id=big_soft, seniority="director")
    f.person("ent_vp_saas", company_id=cloud, seniority="vp")
    f.person("ent_manager", company_id=big_soft, seniority="manager")
    f.person("ent_small_company", company_id=small, seniority="c_level")
    f.person("ent_bank", company_id=bank, seniority="owner")
    f.person("ent_no_company", seniority="director")

    # Trial downloaded but not purchased (an order after the trial disqualifies).
    for name in ("trial_yes", "trial_bought_after", "trial_bought_before"):
        f.person(name)
    f.did("trial_yes", "Trial Downloaded", 10 * DAY)
    f.did("trial_bought_after", "Trial Downloaded", 10 * DAY)
    f.did("trial_bought_after", "Order Completed", 8 * DAY, total=99)  # two days after
    f.did("trial_bought_before", "Order Completed", 20 * DAY, total=99)
    f.did("trial_bought_before", "Trial Downloaded", 10 * DAY)

    # New subscribers of the last 7 days.
    f.person("new_yes", created_at=NOW - 2 * DAY)
    f.person("new_unsubscribed", created_at=NOW - 2 * DAY, status="unsubscribed")
    f.person("new_8_days", created_at=NOW - 8 * DAY)

    active = f.names(
        "hv_yes", "hv_old_order", "hv_machine", "hv_no_vip", "hv_exact_500",
        "pi_yes", "pi_two_views", "pi_old_views", "active_click_89d",
    )  # fmt: skip
    expected = {
        "high_value_customers": f.names("hv_yes"),
        "cart_abandoners": f.names("cart_yes", "cart_order_before"),
        "product_interest": f.names("pi_yes"),
        "inactive": set(f.ids.values()) - active,
        "enterprise_decision_makers": f.names("ent_director", "ent_vp_saas"),
        "trial_not_purchased": f.names("trial_yes", "trial_bought_before"),
        "new_subscribers": f.names("new_yes"),
    }
    return f, expected


@pytest.fixture
def fixture(db: Database) -> tuple[Fixture, dict[str, set[int]]]:
    with db.engine.begin() as conn:
        return build(conn)


def test_every_playbook_is_in_the_fixture() -> None:
    assert set(playbooks.KEYS) == {
        "high_value_customers", "cart_abandoners", "product_interest", "inactive",
        "enterprise_decision_makers", "trial_not_purchased", "new_subscribers",
    }  # fmt: skip


@pytest.mark.parametrize("key", playbooks.KEYS)
def test_playbook_members_by_sql_and_evaluator(
    db: Database, fixture: tuple[Fixture, dict[str, set[int]]], key: str
) -> None:
    f, expected = fixture
    definition = seeding.parse(playbooks.load(key).definition)
    found = seeding.both(db, definition, f.ws)
    names = {v: k for k, v in f.ids.items()}
    assert sorted(names[i] for i in found) == sorted(names[i] for i in expected[key])


def test_seeded_playbooks_refresh_to_the_expected_members(
    db: Database, fixture: tuple[Fixture, dict[str, set[int]]]
) -> None:
    f, expected = fixture
    with db.tenant(f.ws) as s:
        saved = playbooks.seed(s, refresh=False)
        assert [seg.name for seg in saved] == [p.name for p in playbooks.all_playbooks()]
        assert playbooks.seed(s) == []  # a second seed keeps the existing ones
        for book, segment in zip(playbooks.all_playbooks(), saved, strict=True):
            result = membership.refresh(s, segment.id, now=NOW)
            assert membership.current_members(s, segment.id) == expected[book.key], book.key
            assert result.members == len(expected[book.key])
