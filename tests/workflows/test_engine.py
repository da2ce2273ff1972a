"""The pure engine, rule by rule: time zones and DST, quiet hours, frequency caps,
deferred sends, conditions, splits, goals, stops, date waits, serialisation."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from postwise.segments.facts import ContactFacts, EventFact
from postwise.workflows.conditions import evaluator_for, goal_holds
from postwise.workflows.definition import (
    DateTrigger,
    InvalidWorkflow,
    Reentry,
    Workflow,
    parse_workflow,
)
from postwise.workflows.engine import (
    AddToListCommand,
    CallWebhookCommand,
    Enroll,
    EventArrived,
    ExitCommand,
    Facts,
    GoalCheck,
    MissingFact,
    Outcome,
    RecordStep,
    ScheduleWake,
    SegmentChanged,
    SendEmailCommand,
    State,
    Stop,
    UpdateAttributeCommand,
    Wake,
    advance,
    after_quiet_hours,
    cap_allows_at,
    migrate,
    next_time_of_day,
    split_draw,
)
from postwise.workflows.references import workflow_references
from postwise.workflows.triggers import (
    PastEnrollments,
    date_trigger_due,
    event_trigger,
    list_trigger,
    may_enroll,
    segment_trigger,
)

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[arg-type,misc]


def workflow(*steps: dict[str, Any], **top: Any) -> Workflow:
    return parse_workflow(
        {"name": "t", "triggers": [{"type": "manual"}], "steps": list(steps), **top}
    )


def start(wf: Workflow, now: datetime, facts: Facts | None = None, eid: str = "e1") -> Outcome:
    return advance(wf, State.new(eid), Enroll(), now, facts or Facts())


def sends(out: Outcome) -> list[SendEmailCommand]:
    return [c for c in out.commands if isinstance(c, SendEmailCommand)]


def test_wait_until_nine_local_across_dst() -> None:
    at9 = datetime.strptime("09:00", "%H:%M").time()
    # Berlin is UTC+1 before 29 March 2026 and UTC+2 after.
    assert next_time_of_day(utc(2026, 3, 27, 12), at9, BERLIN) == utc(2026, 3, 28, 8)
    assert next_time_of_day(utc(2026, 3, 28, 12), at9, BERLIN) == utc(2026, 3, 29, 7)
    assert next_time_of_day(utc(2026, 10, 24, 12), at9, BERLIN) == utc(2026, 10, 25, 8)
    # Exactly 09:00 local now: the next one is tomorrow (a time-of-day wait always waits).
    assert next_time_of_day(utc(2026, 3, 2, 8), at9, BERLIN) == utc(2026, 3, 3, 8)
    # 02:30 does not exist on 29 March in Berlin: it means 03:30 summer time.
    at230 = datetime.strptime("02:30", "%H:%M").time()
    assert next_time_of_day(utc(2026, 3, 28, 23), at230, BERLIN) == utc(2026, 3, 29, 1, 30)
    # 02:30 happens twice on 25 October: the first time counts.
    assert next_time_of_day(utc(2026, 10, 24, 23), at230, BERLIN) == utc(2026, 10, 25, 0, 30)
    wf = workflow({"id": "w", "type": "wait_until", "time": "09:00"}, {"id": "s", "type": "exit"})
    out = start(wf, utc(2026, 3, 28, 12), Facts(timezone="Europe/Berlin"))
    assert out.wake_at == utc(2026, 3, 29, 7)
    woken = advance(wf, out.state, Wake(), utc(2026, 3, 29, 7), Facts(timezone="Europe/Berlin"))
    assert woken.exit_reason == "exit_step"


def test_quiet_hours_and_caps() -> None:
    wf = workflow(
        {"id": "hi", "type": "send_email", "template": "t"},
        policies={
            "quiet_hours": {"start": "12:00", "end": "14:00"},
            "frequency_cap": {"per_week": 3},
        },
    )
    quiet = wf.policies.quiet_hours
    assert after_quiet_hours(utc(2026, 3, 2, 12, 30), quiet, ZoneInfo("UTC")) == utc(2026, 3, 2, 14)
    assert after_quiet_hours(utc(2026, 3, 2, 14), quiet, ZoneInfo("UTC")) == utc(2026, 3, 2, 14)
    # Three sends in the last week: the week cap opens 7 days after the oldest of them.
    recent = [utc(2026, 3, 1, 9), utc(2026, 2, 27, 9), utc(2026, 2, 25, 16)]
    now = utc(2026, 3, 2, 9)
    assert cap_allows_at(now, recent, None, 3) == utc(2026, 3, 4, 16)
    assert cap_allows_at(now, recent, 2, None) == now
    assert cap_allows_at(now, recent[:2], None, 3) == now
    out = start(wf, now, Facts(recent_sends=recent))
    assert sends(out) == [] and out.wake_at == utc(2026, 3, 4, 16)
    # The wake-up retries the same visit: same idempotency key as an undeferred send.
    woken = advance(wf, out.state, Wake(), utc(2026, 3, 4, 16), Facts(recent_sends=recent[:2]))
    assert [s.key for s in sends(woken)] == ["e1:hi:1"]
    # Deferred by the cap to 12:40, which is quiet: then to 14:00.
    lunch = [utc(2026, 3, 2, 12, 40) - timedelta(days=7), *recent[:2]]
    out = start(wf, utc(2026, 3, 2, 11), Facts(recent_sends=lunch))
    assert out.wake_at == utc(2026, 3, 2, 14)
    # Transactional mail ignores both.
    receipt = workflow(
        {"id": "r", "type": "send_email", "template": "t", "marketing": False},
        policies={
            "quiet_hours": {"start": "00:00", "end": "23:59"},
            "frequency_cap": {"per_day": 1},
        },
    )
    out = start(receipt, utc(2026, 3, 2, 11), Facts(recent_sends=[utc(2026, 3, 2, 10)]))
    assert [s.template for s in sends(out)] == ["t"] and out.exit_reason == "completed"


def test_sends_in_one_advance_count_toward_the_cap() -> None:
    wf = workflow(
        {"id": "a", "type": "send_email", "template": "one"},
        {"id": "b", "type": "send_email", "template": "two"},
        policies={"frequency_cap": {"per_day": 1}},
    )
    out = start(wf, utc(2026, 3, 2, 9))
    assert [s.template for s in sends(out)] == ["one"]
    assert out.wake_at == utc(2026, 3, 3, 9) and out.state.step == "b"


def test_conditions_from_facts_from_the_evaluator_or_missing() -> None:
    wf = workflow(
        {
            "id": "vip",
            "type": "condition",
            "segment": {"event": "Order Completed", "window": {"last": {"days": 30}}},
            "yes": "gold",
            "no": "plain",
        },
        {"id": "gold", "type": "add_to_list", "list": "Gold", "next": "end"},
        {"id": "plain", "type": "update_attribute", "attribute": "tier", "value": "basic"},
        {"id": "end", "type": "exit", "reason": "sorted"},
    )
    now = utc(2026, 3, 2, 9)
    yes = start(wf, now, Facts(conditions={"vip": True}))
    assert [type(c) for c in yes.commands if not isinstance(c, RecordStep)] == [
        AddToListCommand,
        ExitCommand,
    ]
    assert ("vip", "yes") in [(h.step, h.outcome) for h in yes.state.history]
    no = start(wf, now, Facts(conditions={"vip": False}))
    update = [c for c in no.commands if isinstance(c, UpdateAttributeCommand)]
    assert [(u.attribute, u.value, u.key) for u in update] == [("tier", "basic", "e1:plain:1")]
    with pytest.raises(MissingFact):
        start(wf, now, Facts())
    buyer = ContactFacts(
        contact={"id": 1},
        events=[EventFact("Order Completed", "track", {}, now - timedelta(days=3))],
    )
    old = ContactFacts(
        contact={"id": 2},
        events=[EventFact("Order Completed", "track", {}, now - timedelta(days=40))],
    )
    assert start(wf, now, Facts(decide=evaluator_for(buyer))).state.history[0].outcome == "yes"
    assert start(wf, now, Facts(decide=evaluator_for(old))).state.history[0].outcome == "no"


def test_split_is_stable_and_proportionate() -> None:
    wf = workflow(
        {
            "id": "ab",
            "type": "split",
            "branches": [{"percent": 30, "next": "a"}, {"percent": 70, "next": "b"}],
        },
        {"id": "a", "type": "exit", "reason": "a"},
        {"id": "b", "type": "exit", "reason": "b"},
    )
    now = utc(2026, 3, 2, 9)
    reasons = Counter(start(wf, now, eid=f"e{i}").exit_reason for i in range(4000))
    assert 1080 <= reasons["a"] <= 1320  # 30% of 4000, within about 4 standard deviations
    for i in range(50):
        eid = f"x{i}"
        assert (
            start(wf, now, eid=eid).exit_reason
            == start(wf, now + timedelta(days=3), eid=eid).exit_reason
        )
    assert 0 <= split_draw("e1", "ab") < 100


def test_goals_stops_and_ignored_stimuli() -> None:
    wf = workflow(
        {"id": "w", "type": "wait", "duration": {"days": 2}},
        {"id": "s", "type": "send_email", "template": "t"},
        goal={"segment": {"list": 4}},
    )
    now = utc(2026, 3, 2, 9)
    out = start(wf, now)
    wake = out.wake_at
    # A segment change with the goal not met moves nothing and repeats the wake-up.
    same = advance(wf, out.state, SegmentChanged(9, True), now + timedelta(hours=1), Facts())
    assert same.commands == (ScheduleWake(wake),) and same.state == out.state  # type: ignore[arg-type]
    # An early wake-up is harmless.
    early = advance(wf, out.state, Wake(), now + timedelta(hours=1), Facts())
    assert early.commands == (ScheduleWake(wake),)  # type: ignore[arg-type]
    met = advance(wf, out.state, GoalCheck(), now + timedelta(hours=2), Facts(goal_met=True))
    assert met.exit_reason == "goal" and sends(met) == []
    assert met.state.status == "exited" and met.state.exit_reason == "goal"
    # A finished enrollment ignores everything.
    after = advance(wf, met.state, Wake(), now + timedelta(days=5), Facts())
    assert after.commands == () and after.state == met.state
    stopped = advance(wf, out.state, Stop("unsubscribed"), now, Facts())
    assert stopped.exit_reason == "unsubscribed"
    # A goal already met at enrollment: out at once.
    assert start(wf, now, Facts(goal_met=True)).exit_reason == "goal"
    member = ContactFacts(contact={"id": 1}, lists={4: "subscribed"})
    assert goal_holds(wf, member, now) and not goal_holds(wf, ContactFacts(contact={"id": 2}), now)


def test_event_goals_with_filters() -> None:
    wf = workflow(
        {"id": "w", "type": "wait", "duration": {"days": 2}},
        {"id": "s", "type": "send_email", "template": "t"},
        goal={
            "event": "Order Completed",
            "where": [{"property": "total", "op": "gte", "value": 50}],
        },
    )
    out = start(wf, utc(2026, 3, 2, 9))
    small = advance(
        wf, out.state, EventArrived("Order Completed", {"total": 10}), utc(2026, 3, 2, 10), Facts()
    )
    assert small.exit_reason is None and small.wake_at == out.wake_at
    big = advance(
        wf, out.state, EventArrived("Order Completed", {"total": 80}), utc(2026, 3, 2, 10), Facts()
    )
    assert big.exit_reason == "goal"


def test_wait_until_a_date_attribute() -> None:
    wf = workflow(
        {"id": "before_end", "type": "wait_until", "attribute": "trial_ends_on", "offset_days": -3},
        {"id": "remind", "type": "send_email", "template": "ending"},
    )
    now = utc(2026, 3, 2, 12)
    tz = "America/New_York"
    out = start(wf, now, Facts(timezone=tz, attributes={"trial_ends_on": "2026-03-20"}))
    assert out.wake_at == utc(2026, 3, 17, 13)  # 09:00 EDT
    past = start(wf, now, Facts(attributes={"trial_ends_on": "2026-03-04"}))
    assert [s.template for s in sends(past)] == ["ending"]
    assert ("before_end", "passed") in [(h.step, h.outcome) for h in past.state.history]
    moment = start(wf, now, Facts(attributes={"trial_ends_on": "2026-03-20T17:45:00Z"}))
    assert moment.wake_at == utc(2026, 3, 17, 17, 45)
    missing = start(wf, now, Facts(attributes={}))
    assert [s.template for s in sends(missing)] == ["ending"]
    strict = workflow(
        {"id": "w", "type": "wait_until", "attribute": "renews_on", "if_missing": "exit"},
        {"id": "s", "type": "send_email", "template": "x"},
    )
    assert (
        start(strict, now, Facts(attributes={"renews_on": 12})).exit_reason == "missing_attribute"
    )


def test_wait_for_event_and_webhook_commands() -> None:
    wf = workflow(
        {"id": "ask", "type": "send_email", "template": "ask"},
        {
            "id": "reply",
            "type": "wait_for_event",
            "event": ["Demo Booked", "Call Booked"],
            "where": [{"property": "plan", "op": "in", "value": ["pro", "team"]}],
            "timeout": {"days": 2},
            "on_event": "hook",
            "on_timeout": "again",
        },
        {"id": "hook", "type": "webhook", "url": "https://crm.example/h", "secret": "crm",
         "body": {"kind": "booked"}, "max_attempts": 3, "backoff": 10, "next": "end"},
        {"id": "again", "type": "send_email", "template": "ask", "next": "reply"},
        {"id": "end", "type": "exit", "reason": "booked"},
    )  # fmt: skip
    t0 = utc(2026, 3, 2, 9)
    out = start(wf, t0)
    assert out.wake_at == t0 + timedelta(days=2)
    assert out.state.waiting is not None and out.state.waiting.event == [
        "Demo Booked",
        "Call Booked",
    ]
    wrong = advance(wf, out.state, EventArrived("Demo Booked", {"plan": "free"}), t0, Facts())
    assert wrong.state.step == "reply" and wrong.wake_at == out.wake_at
    # Timeout loops back: a second visit of "again"/"reply" and new keys.
    timed = advance(wf, out.state, Wake(), t0 + timedelta(days=2), Facts())
    assert [s.key for s in sends(timed)] == ["e1:again:1"]
    assert timed.state.visits == {"ask": 1, "reply": 2, "again": 1}
    booked = advance(
        wf,
        timed.state,
        EventArrived("Call Booked", {"plan": "team"}),
        t0 + timedelta(days=3),
        Facts(),
    )
    hooks = [c for c in booked.commands if isinstance(c, CallWebhookCommand)]
    assert [(h.key, h.url, h.secret, dict(h.body), h.max_attempts, h.backoff) for h in hooks] == [
        ("e1:hook:1", "https://crm.example/h", "crm", {"kind": "booked"}, 3, 10)
    ]
    assert booked.exit_reason == "booked"
    assert booked.state.data["events"]["Call Booked"] == [{"plan": "team"}]


def test_state_is_json_and_replays_identically() -> None:
    wf = workflow(
        {"id": "hi", "type": "send_email", "template": "t"},
        {"id": "w", "type": "wait", "duration": {"hours": 5}},
        {"id": "bye", "type": "send_email", "template": "u"},
        triggers=[{"type": "event", "event": "Signed Up"}],
    )
    now = utc(2026, 3, 2, 9)
    first = advance(
        wf,
        State.new(42, {"plan": "pro"}, event="Signed Up", properties={"a": 1}),
        Enroll(),
        now,
        Facts(),
    )
    stored = json.dumps(first.state.model_dump(mode="json"))
    loaded = State.model_validate(json.loads(stored))
    assert loaded == first.state
    assert loaded.wake_at == first.wake_at == now + timedelta(hours=5)
    later = now + timedelta(hours=5)
    a = advance(wf, loaded, Wake(), later, Facts())
    b = advance(wf, first.state, Wake(), later, Facts())
    assert a == b
    assert sends(a)[0].data == {"plan": "pro", "events": {"Signed Up": [{"a": 1}]}}
    assert [(h.step, h.outcome) for h in a.state.history] == [
        ("hi", "sent"),
        ("w", "waited"),
        ("bye", "sent"),
    ]
    assert a.state.exit_reason == "completed" and a.state.exited_at == later
    # The caller's state is never changed, nor the data a send carried.
    before = first.state.model_copy(deep=True)
    sent_data = json.dumps(sends(first)[0].data)
    joined = advance(wf, first.state, EventArrived("Signed Up", {"a": 2}), now, Facts())
    assert joined.state.data["events"]["Signed Up"] == [{"a": 1}, {"a": 2}]
    advance(wf, joined.state, Wake(), later, Facts())
    assert first.state == before and json.dumps(sends(first)[0].data) == sent_data
    # Enroll twice is not a second start.
    again = advance(wf, first.state, Enroll(), now, Facts())
    assert sends(again) == [] and again.wake_at == first.wake_at


def test_triggers_and_reentry() -> None:
    yearly = DateTrigger(type="date", attribute="birthday", yearly=True)
    assert date_trigger_due(yearly, "1990-07-04", date(2026, 7, 4))
    assert not date_trigger_due(yearly, "1990-07-04", date(2026, 7, 5))
    assert date_trigger_due(yearly, "2000-02-29", date(2028, 2, 29))
    assert not date_trigger_due(yearly, "2000-02-29", date(2028, 2, 28))
    assert not date_trigger_due(yearly, None, date(2026, 7, 4))
    ending = DateTrigger(type="date", attribute="trial_ends_on", offset_days=-3)
    assert date_trigger_due(ending, "2026-03-20", date(2026, 3, 17))
    assert not date_trigger_due(ending, "2026-03-20", date(2027, 3, 17))
    early = DateTrigger(type="date", attribute="renewal", yearly=True, offset_days=-7)
    assert date_trigger_due(early, "2020-01-03", date(2026, 12, 27))
    wf = workflow(
        {"id": "x", "type": "exit"},
        triggers=[
            {"type": "event", "event": "Product Added",
             "where": [{"property": "price", "op": "gte", "value": 100}]},
            {"type": "list_subscribed", "list": 4},
            {"type": "segment_exited", "segment": 9},
        ],
    )  # fmt: skip
    assert event_trigger(wf, "Product Added", {"price": 120}) is wf.triggers[0]
    assert event_trigger(wf, "Product Added", {"price": 20}) is None
    assert event_trigger(wf, "Order Completed", {"price": 120}) is None
    assert list_trigger(wf, 4) and not list_trigger(wf, 5, "Newsletter")
    assert segment_trigger(wf, 9, entered=False) and not segment_trigger(wf, 9, entered=True)
    now = utc(2026, 3, 10)
    once, always = Reentry(mode="once"), Reentry(mode="always")
    cooldown = Reentry.model_validate({"mode": "cooldown", "cooldown": {"days": 7}})
    assert may_enroll(once, PastEnrollments(), now)
    assert not may_enroll(once, PastEnrollments(False, 1, utc(2026, 1, 1)), now)
    assert not may_enroll(always, PastEnrollments(True, 1, utc(2026, 1, 1)), now)
    assert may_enroll(always, PastEnrollments(False, 3, utc(2026, 3, 9)), now)
    assert not may_enroll(cooldown, PastEnrollments(False, 1, utc(2026, 3, 4)), now)
    assert may_enroll(cooldown, PastEnrollments(False, 1, utc(2026, 3, 3)), now)


def test_references_of_conditions_and_segment_goals() -> None:
    wf = workflow(
        {"id": "c", "type": "condition", "segment": {"list": 3}, "yes": "w", "no": "w"},
        {"id": "w", "type": "wait_until", "attribute": "renews_on"},
        goal={"segment": {"event": "Order Completed", "window": {"last": {"days": 1}}}},
    )
    refs = workflow_references(wf)
    assert refs.segment_facts and [sorted(r.list_ids) for r in refs.conditions] == [[3], []]
    assert refs.conditions[1].event_names == {"Order Completed"}
    assert refs.date_attributes == {"renews_on"}


def test_migrating_an_enrollment_to_a_new_version() -> None:
    v1 = workflow(
        {"id": "hi", "type": "send_email", "template": "t"},
        {"id": "w", "type": "wait", "duration": {"days": 3}},
        {"id": "bye", "type": "send_email", "template": "u"},
    )
    v2 = workflow(
        {"id": "hi", "type": "send_email", "template": "t"},
        {"id": "w", "type": "wait", "duration": {"days": 5}},
        {"id": "extra", "type": "send_email", "template": "x"},
        {"id": "bye", "type": "send_email", "template": "u"},
    )
    now = utc(2026, 3, 2, 9)
    out = start(v1, now)
    moved = migrate(out.state, v2, now + timedelta(hours=1))
    assert moved.history[-1].outcome == "migrated" and moved.waiting == out.state.waiting
    # The wait keeps its deadline; then the new version's steps follow.
    woken = advance(v2, moved, Wake(), now + timedelta(days=3), Facts())
    assert [s.template for s in sends(woken)] == ["x", "u"]
    v3 = workflow(
        {"id": "hi", "type": "send_email", "template": "t"},
        {"id": "w", "type": "wait_for_event", "event": "E", "timeout": {"days": 1},
         "on_event": "bye", "on_timeout": "bye"},
        {"id": "bye", "type": "send_email", "template": "u"},
    )  # fmt: skip
    with pytest.raises(InvalidWorkflow) as exc:
        migrate(out.state, v3, now)
    assert exc.value.code == "cannot_migrate" and exc.value.field == "w"
    assert "step 'w'" in exc.value.message
    finished = advance(v1, out.state, Stop("x"), now, Facts()).state
    assert migrate(finished, v3, now) == finished
