"""parse_workflow: good documents parse; each kind of bad one is refused with a 422 that
names the step at fault and the path of the offending key."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from postwise.segments.definition import SchemaContext
from postwise.workflows.definition import InvalidWorkflow, WorkflowContext, parse_workflow


def base() -> dict[str, Any]:
    return {
        "version": 1,
        "name": "Test",
        "triggers": [{"type": "event", "event": "Signed Up"}],
        "steps": [
            {"id": "hello", "type": "send_email", "template": "welcome"},
            {"id": "pause", "type": "wait", "duration": {"days": 2}},
            {
                "id": "engaged",
                "type": "condition",
                "segment": {"email": "opened", "window": {"last": {"days": 2}}},
                "yes": "thanks",
                "no": "nudge",
            },
            {"id": "thanks", "type": "add_to_list", "list": 3},
            {"id": "done", "type": "exit"},
            {"id": "nudge", "type": "send_email", "template": "nudge"},
        ],
    }


CTX = WorkflowContext(templates=frozenset({"welcome", "nudge"}), lists=frozenset({3, "VIP"}))


def refused(doc: dict[str, Any], ctx: WorkflowContext = CTX) -> InvalidWorkflow:
    with pytest.raises(InvalidWorkflow) as exc:
        parse_workflow(doc, ctx)
    assert exc.value.status == 422
    return exc.value


def test_a_good_workflow_parses() -> None:
    wf = parse_workflow(base(), CTX)
    assert wf.start == "hello"
    assert wf.successors("engaged") == ["thanks", "nudge"]
    assert wf.following("thanks") == "done" and wf.following("nudge") is None
    assert set(wf.conditions) == {"engaged"}
    assert wf.policies.reentry.mode == "once"


def with_step(index: int, **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(base())
    doc["steps"][index].update(changes)
    for key, value in changes.items():
        if value is None:
            del doc["steps"][index][key]
    return doc


@pytest.mark.parametrize(
    ("doc", "code", "field", "step"),
    [
        # unreachable: after the exit step "done", and nothing names it
        (
            {**base(), "steps": [*base()["steps"][:5], {"id": "orphan", "type": "exit"},
                                 base()["steps"][5]]},
            "unreachable_step", "steps[5]", "orphan",
        ),
        (with_step(2, no=None), "missing_branch", "steps[2].no", "engaged"),
        (with_step(0, next="nowhere"), "dangling_step", "steps[0].next", "hello"),
        (with_step(2, yes="ghost"), "dangling_step", "steps[2].yes", "engaged"),
        (with_step(0, template="missing"), "unknown_template", "steps[0].template", "hello"),
        (with_step(3, list=99), "unknown_list", "steps[3].list", "thanks"),
        (with_step(1, duration={"days": 0}), "invalid_duration", "steps[1].duration", "pause"),
        (with_step(1, duration={"days": 4000}), "invalid_duration", "steps[1].duration", "pause"),
        (with_step(1, duration={"hours": -1}), "invalid_workflow", "steps[1].duration.hours",
         "pause"),
        (with_step(1, duration={"weeks": 1}), "invalid_workflow", "steps[1].duration.weeks",
         "pause"),
        (with_step(1, id="hello"), "duplicate_step", "steps[1].id", "hello"),
        (with_step(1, type="teleport"), "invalid_workflow", "steps[1].type", "pause"),
        (with_step(0, colour="red"), "invalid_workflow", "steps[0].colour", "hello"),
        (with_step(2, next="thanks"), "invalid_workflow", "steps[2].next", "engaged"),
        (
            with_step(2, segment={"field": "contact.favourite_colour", "op": "eq", "value": "x"}),
            "unknown_field", "steps[2].segment.field", "engaged",
        ),
        (
            with_step(2, segment={"all": [{"email": "opened"}, {"list": 0}]}),
            "invalid_segment", "steps[2].segment.all[1].list", "engaged",
        ),
    ],
)  # fmt: skip
def test_bad_steps_are_named(doc: dict[str, Any], code: str, field: str, step: str) -> None:
    err = refused(doc)
    assert err.code == code, err.message
    assert err.field == field, err.message
    assert f"step {step!r}" in err.message


def linear(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"name": "x", "triggers": [{"type": "manual"}], "steps": list(steps)}


def test_loops_without_a_wait_are_refused_and_loops_with_one_are_not() -> None:
    loop = linear(
        {"id": "a", "type": "send_email", "template": "welcome"},
        {"id": "b", "type": "update_attribute", "attribute": "score", "value": 1, "next": "a"},
    )
    err = refused(loop)
    assert err.code == "loop_without_wait"
    assert "a -> b -> a" in err.message and err.field == "steps[0]"
    # The same loop through a time-of-day wait is a daily reminder: fine.
    waiting = linear(
        {"id": "a", "type": "send_email", "template": "welcome"},
        {"id": "w", "type": "wait_until", "time": "09:00"},
        {"id": "b", "type": "update_attribute", "attribute": "score", "value": 1, "next": "a"},
    )
    parse_workflow(waiting, CTX)
    # A wait on a date attribute does not count: a past date continues at once.
    date_wait = linear(
        {"id": "a", "type": "send_email", "template": "welcome"},
        {"id": "w", "type": "wait_until", "attribute": "renewal_date"},
        {"id": "b", "type": "exit", "reason": "x"},
    )
    parse_workflow(date_wait, CTX)
    date_loop = copy.deepcopy(date_wait)
    date_loop["steps"][1]["next"] = "a"
    date_loop["steps"].pop()
    assert refused(date_loop).code == "loop_without_wait"
    # A split whose branches meet again in a loop that waits on an event is fine.
    split_loop = linear(
        {"id": "s", "type": "split",
         "branches": [{"percent": 50, "next": "x"}, {"percent": 50, "next": "y"}]},
        {"id": "x", "type": "send_email", "template": "welcome", "next": "ask"},
        {"id": "y", "type": "send_email", "template": "nudge", "next": "ask"},
        {"id": "ask", "type": "wait_for_event", "event": "Replied", "timeout": {"days": 1},
         "on_event": "end", "on_timeout": "s"},
        {"id": "end", "type": "exit"},
    )  # fmt: skip
    parse_workflow(split_loop, CTX)


def test_split_percentages() -> None:
    def split(*percents: Any) -> dict[str, Any]:
        return linear(
            {
                "id": "ab",
                "type": "split",
                "branches": [{"percent": p, "next": "end"} for p in percents],
            },
            {"id": "end", "type": "exit"},
        )

    parse_workflow(split(30, 70), CTX)
    parse_workflow(split(33.5, 33.25, 33.25), CTX)
    err = refused(split(50, 40))
    assert (err.code, err.field) == ("invalid_percentages", "steps[0].branches")
    assert "step 'ab'" in err.message and "90" in err.message
    err = refused(split(0, 100))
    assert err.field == "steps[0].branches[0].percent" and "step 'ab'" in err.message
    err = refused(split(100))
    assert err.field == "steps[0].branches" and "step 'ab'" in err.message


def test_waits_and_times() -> None:
    err = refused(linear({"id": "w", "type": "wait_until", "time": "25:00"}))
    assert err.field == "steps[0]" and "step 'w'" in err.message and "HH:MM" in err.message
    err = refused(linear({"id": "w", "type": "wait_until"}))
    assert "step 'w'" in err.message
    err = refused(
        linear(
            {"id": "w", "type": "wait_until", "attribute": "x", "time": "09:00", "days_later": 2}
        )
    )
    assert "days_later" in err.message
    err = refused(
        linear(
            {"id": "e", "type": "wait_for_event", "event": "Booked", "timeout": {"minutes": 0},
             "on_event": "e", "on_timeout": "e"}
        )
    )  # fmt: skip
    assert err.code == "invalid_duration" and err.field == "steps[0].timeout"
    err = refused(
        linear(
            {"id": "e", "type": "wait_for_event", "event": "Booked", "timeout": {"days": 1},
             "on_event": "e"}
        )
    )  # fmt: skip
    assert (err.code, err.field) == ("missing_branch", "steps[0].on_timeout")
    err = refused(
        linear(
            {"id": "e", "type": "wait_for_event", "event": "Booked", "timeout": {"days": 1},
             "where": [{"property": "plan", "op": "gt", "value": "pro"}],
             "on_event": "e", "on_timeout": "e"}
        )
    )  # fmt: skip
    assert err.field == "steps[0].where[0].value" and "step 'e'" in err.message


def test_triggers_goal_and_policies() -> None:
    doc = base()
    doc["triggers"] = []
    assert refused(doc).field == "triggers"
    doc = base()
    doc["triggers"] = [{"type": "list_subscribed", "list": "Unknown"}]
    assert (refused(doc).code, refused(doc).field) == ("unknown_list", "triggers[0].list")
    doc["triggers"] = [{"type": "list_subscribed", "list": "VIP"}]
    parse_workflow(doc, CTX)
    doc["triggers"] = [{"type": "date", "attribute": "birthday", "yearly": True, "at": "9am"}]
    assert refused(doc).field == "triggers[0].at"
    doc["triggers"] = [{"type": "segment_entered", "segment": 5}]
    ctx = WorkflowContext(segments=SchemaContext(segments={4: {"email": "opened"}}))
    assert "unknown segment 5" in refused(doc, ctx).message
    doc = base()
    doc["goal"] = {"event": "Order Completed", "segment": {"email": "opened"}}
    assert refused(doc).field == "goal"
    doc["goal"] = {"segment": {"event": "Order Completed", "count": {"op": "gte", "value": 2}}}
    err = refused(doc)
    assert err.code == "unbounded_segment" and err.field == "goal.segment.window"
    doc["goal"] = {"event": ["Order Completed", "Subscription Started"]}
    assert parse_workflow(doc, CTX).goal is not None
    doc = base()
    doc["policies"] = {"timezone": "Mars/Olympus"}
    assert refused(doc).field == "policies.timezone"
    doc["policies"] = {"quiet_hours": {"start": "22:00", "end": "22:00"}}
    assert refused(doc).field == "policies.quiet_hours"
    doc["policies"] = {"frequency_cap": {"per_day": 5, "per_week": 2}}
    assert refused(doc).field == "policies.frequency_cap.per_week"
    doc["policies"] = {"reentry": {"mode": "cooldown"}}
    assert refused(doc).field == "policies.reentry"
    doc["policies"] = {"reentry": {"mode": "cooldown", "cooldown": {"days": 30}}}
    assert parse_workflow(doc, CTX).policies.reentry.cooldown is not None
    doc["start"] = "ghost"
    assert (refused(doc).code, refused(doc).field) == ("dangling_step", "start")
    assert refused({**base(), "version": 2}).field == "version"
    assert refused([]).code == "invalid_workflow"  # type: ignore[arg-type]


def test_webhook_and_lists() -> None:
    hook = linear(
        {"id": "tell", "type": "webhook", "url": "https://crm.example/h", "secret": "crm"}
    )
    parse_workflow(hook, CTX)
    err = refused(hook, WorkflowContext(webhook_secrets=frozenset({"other"})))
    assert (err.code, err.field) == ("unknown_secret", "steps[0].secret")
    err = refused(linear({"id": "tell", "type": "webhook", "url": "ftp://x/y", "secret": "crm"}))
    assert err.field == "steps[0].url" and "step 'tell'" in err.message
    err = refused(linear({"id": "u", "type": "unsubscribe", "list": "Nope"}))
    assert (err.code, err.field) == ("unknown_list", "steps[0].list")
    parse_workflow(linear({"id": "u", "type": "unsubscribe"}), CTX)
    err = refused(linear({"id": "up", "type": "update_attribute", "attribute": "a b", "value": 1}))
    assert err.field == "steps[0].attribute" and "step 'up'" in err.message
    sender = linear({"id": "s", "type": "send_email", "template": "welcome", "sender": "x@y.z"})
    err = refused(sender, WorkflowContext(senders=frozenset({"news@acme.example"})))
    assert (err.code, err.field) == ("unknown_sender", "steps[0].sender")
    # No context: templates and lists are not checked (a playbook before installation).
    parse_workflow(linear({"id": "s", "type": "send_email", "template": "anything"}))
