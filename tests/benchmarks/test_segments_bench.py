"""The segment benchmark at a tiny scale: its data set, both queries of every playbook and
the real-time loop run, and the compiled count equals the hand-written one.

The equality is the point: ``benchmarks/segment_playbooks.py`` states each playbook in
SQL written independently of the compiler, over data with near-misses on every side
(windows, machine opens, other categories, orders before and after a cart), so a
compiler that drifts from the documented meaning fails here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from benchmarks import segments
from benchmarks.segment_data import GENERATOR_VERSION, Scale, ensure
from benchmarks.segment_playbooks import load
from postwise.storage.database import Database

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]

SCALE = Scale(contacts=5000, companies=100, events=150_000)


@pytest.fixture
def bench_db(postgres_url: str) -> Iterator[Database]:
    db = Database(postgres_url)
    yield db
    db.dispose()


def test_every_playbook_compiles_to_the_hand_written_count(bench_db: Database) -> None:
    dataset = ensure(bench_db, SCALE, log=lambda *_: None)
    assert dataset.load_seconds is not None  # the fixture emptied the database
    results = segments.measure_counts(bench_db, dataset, repeat=1)
    assert [r.key for r in results] == [
        "high_value_customers", "cart_abandoners", "product_interest", "inactive",
        "enterprise_decision_makers", "trial_not_purchased", "new_subscribers",
    ]  # fmt: skip
    for r in results:
        assert r.hand_count == r.compiled_count, r
        # Neither nobody nor everybody: the data exercises both sides of every test.
        assert 0 < r.compiled_count < SCALE.contacts, r

    again = ensure(bench_db, SCALE, log=lambda *_: None)
    assert again.load_seconds is None  # same scale: reused, not rebuilt
    assert again.now == dataset.now
    with bench_db.engine.connect() as conn:
        marker = conn.execute(
            text("SELECT settings -> 'segment_benchmark' FROM workspaces WHERE id = :ws"),
            {"ws": dataset.workspace_id},
        ).scalar_one()
    assert marker["version"] == GENERATOR_VERSION
    assert marker["scale"] == SCALE.as_dict()


def test_real_time_reevaluation_is_timed_and_rolled_back(bench_db: Database) -> None:
    dataset = ensure(bench_db, SCALE, log=lambda *_: None)
    result = segments.measure_incremental(bench_db, dataset, events=60)
    assert result.events == 60
    assert 0 < result.touching < result.events  # mail sends trigger no playbook
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms
    # unmeasured first decisions, at most five per event name, cleaned up as well
    assert 0 < len(result.warm_ups) <= segments.WARM_UPS * 9
    with bench_db.engine.connect() as conn:
        stays = conn.execute(text("SELECT count(*) FROM segment_memberships")).scalar_one()
        events = conn.execute(text("SELECT count(*) FROM events")).scalar_one()
    assert stays == 0
    assert events == SCALE.events  # every inserted event was rolled back


def test_human_engagement_conditions_use_the_partial_index(bench_db: Database) -> None:
    """The index's predicate repeats the compiler's human-only test; if either changes
    alone, PostgreSQL silently stops using the index and "inactive" reads every open."""
    dataset = ensure(bench_db, SCALE, log=lambda *_: None)
    book = next(b for b in load() if b.key == "inactive")
    statement = segments.compiled_count_sql(book, dataset)
    with bench_db.engine.connect() as conn:
        compiled = statement.compile(
            dialect=conn.dialect, compile_kwargs={"render_postcompile": True}
        )
        plan = "\n".join(
            row[0] for row in conn.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params)
        )
    assert "ix_events_ws_human_engagement" in plan, plan
