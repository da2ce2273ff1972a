"""Properties of the engine over random valid workflows and random event streams, and of
the parser over arbitrary documents.

Workflows are valid by construction: every step but the last leads on to the next one
(fall-through, a condition's ``yes``, a split's first branch, a wait-for-event's
timeout), exits only come last, and the only backward edges leave wait-for-event
steps, so every loop waits.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postwise.workflows.definition import (
    InvalidWorkflow,
    Workflow,
    WorkflowContext,
    parse_workflow,
)
from postwise.workflows.engine import (
    Command,
    Enroll,
    EventArrived,
    ExitCommand,
    Facts,
    ScheduleWake,
    SendEmailCommand,
    State,
    Wake,
    advance,
    parse_hhmm,
    zone,
)

T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
END = T0 + timedelta(days=60)
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney"]
LAST_KINDS = ["send_email", "update_attribute", "add_to_list", "webhook", "exit", "wait"]
KINDS = [*LAST_KINDS[:-2], "wait", "wait_until", "condition", "split", "wait_for_event"]


def hhmm(draw: st.DrawFn) -> str:
    return f"{draw(st.integers(0, 23)):02d}:{draw(st.sampled_from([0, 15, 30, 59])):02d}"


@st.composite
def workflows(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(2, 8))
    ids = [f"s{i}" for i in range(n)]
    steps: list[dict[str, Any]] = []
    for i in range(n):
        kind = draw(st.sampled_from(LAST_KINDS if i == n - 1 else KINDS))
        step: dict[str, Any] = {"id": ids[i], "type": kind}
        forward = st.sampled_from(ids[i + 1 :]) if i < n - 1 else st.nothing()
        if kind == "send_email":
            step |= {
                "template": draw(st.sampled_from(["a", "b"])),
                "marketing": draw(st.booleans()),
            }
        elif kind == "update_attribute":
            step |= {"attribute": "score", "value": draw(st.integers(0, 9))}
        elif kind == "add_to_list":
            step |= {"list": 1}
        elif kind == "webhook":
            step |= {"url": "https://hooks.example/x", "secret": "k"}
        elif kind == "wait":
            step |= {"duration": {"minutes": draw(st.integers(1, 3 * 24 * 60))}}
        elif kind == "wait_until":
            step |= {"time": hhmm(draw)}
        elif kind == "condition":
            step |= {"segment": {"list": 2}, "yes": ids[i + 1], "no": draw(forward)}
        elif kind == "split":
            p = draw(st.integers(1, 99))
            step |= {
                "branches": [
                    {"percent": p, "next": ids[i + 1]},
                    {"percent": 100 - p, "next": draw(forward)},
                ]
            }
        elif kind == "wait_for_event":
            step |= {
                "event": draw(st.sampled_from(["A", "B", ["A", "B"]])),
                "timeout": {"minutes": draw(st.integers(1, 5 * 24 * 60))},
                "on_event": draw(st.sampled_from(ids)),
                "on_timeout": ids[i + 1],
            }
            if draw(st.booleans()):
                step["where"] = [{"property": "v", "op": "gte", "value": 1}]
        steps.append(step)
    policies: dict[str, Any] = {"timezone": draw(st.sampled_from(ZONES))}
    if draw(st.booleans()):
        start, end = hhmm(draw), hhmm(draw)
        if start != end:
            policies["quiet_hours"] = {"start": start, "end": end}
    if draw(st.booleans()):
        per_day = draw(st.integers(1, 3))
        policies["frequency_cap"] = {"per_day": per_day, "per_week": draw(st.integers(per_day, 8))}
    doc: dict[str, Any] = {
        "name": "random",
        "triggers": [{"type": "manual"}],
        "steps": steps,
        "policies": policies,
    }
    if draw(st.booleans()):
        doc["goal"] = {"event": "G"}
    return doc


events = st.lists(
    st.tuples(
        st.integers(0, 60 * 24 * 60),
        st.sampled_from(["A", "B", "G", "Other"]),
        st.integers(0, 3),
    ),
    max_size=25,
)


def in_quiet(moment: datetime, wf: Workflow, tz: ZoneInfo) -> bool:
    quiet = wf.policies.quiet_hours
    if quiet is None:
        return False
    local = moment.astimezone(tz).time()
    start, end = parse_hhmm(quiet.start), parse_hhmm(quiet.end)
    return start <= local < end if start < end else local >= start or local < end


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=workflows(),
    stream=events,
    others=st.lists(st.integers(-7 * 24 * 60, 60 * 24 * 60), max_size=8),
    verdict=st.booleans(),
    tz=st.sampled_from([None, *ZONES, "Not/AZone"]),
)
def test_engine_invariants(
    doc: dict[str, Any],
    stream: list[tuple[int, str, int]],
    others: list[int],
    verdict: bool,
    tz: str | None,
) -> None:
    wf = parse_workflow(doc)
    conditions = dict.fromkeys(wf.conditions, verdict)
    contact_zone = zone(Facts(timezone=tz), wf)
    other_sends = sorted(T0 + timedelta(minutes=m) for m in others)
    script = sorted((T0 + timedelta(minutes=m), name, v) for m, name, v in stream)
    marketing: list[datetime] = []  # the engine's marketing sends
    keys: set[str] = set()

    def facts(now: datetime) -> Facts:
        recent = [t for t in [*other_sends, *marketing] if now - timedelta(days=7) < t <= now]
        return Facts(timezone=tz, recent_sends=recent, conditions=conditions)

    def step(state: State, stimulus: Any, now: datetime) -> tuple[State, list[Command]]:
        # The runtime stores the state as JSON between steps; replaying is stable.
        stored = State.model_validate(json.loads(json.dumps(state.model_dump(mode="json"))))
        out = advance(wf, stored, stimulus, now, facts(now))
        assert out == advance(wf, stored, stimulus, now, facts(now))
        commands = list(out.commands)
        wakes = [c for c in commands if isinstance(c, ScheduleWake)]
        exits = [c for c in commands if isinstance(c, ExitCommand)]
        assert (len(wakes), len(exits)) in ((1, 0), (0, 1)), commands
        assert all(w.at >= now for w in wakes)
        for cmd in commands:
            key = getattr(cmd, "key", None)
            if key is not None:
                assert (type(cmd), key) not in keys, f"{key} twice"
                keys.add((type(cmd), key))  # type: ignore[arg-type]
            if isinstance(cmd, SendEmailCommand) and cmd.marketing:
                assert not in_quiet(now, wf, contact_zone), f"sent in quiet hours at {now}"
                marketing.append(now)
        return out.state, commands

    state, commands = step(State.new("e"), Enroll(), T0)
    index = 0
    while not state.finished:
        wake = next(c.at for c in commands if isinstance(c, ScheduleWake))
        if index < len(script) and script[index][0] < wake:
            at, name, value = script[index]
            index += 1
            if at > END:
                break
            state, commands = step(state, EventArrived(name, {"v": value}), at)
            if name == "G" and wf.goal is not None:
                assert state.exit_reason == "goal"
                assert not any(isinstance(c, SendEmailCommand) for c in commands)
            continue
        if wake > END:
            break
        state, commands = step(state, Wake(), wake)
    cap = wf.policies.frequency_cap
    if cap is not None:
        every = sorted([*other_sends, *marketing])
        for sent in marketing:
            day = sum(1 for t in every if sent - timedelta(days=1) < t <= sent)
            week = sum(1 for t in every if sent - timedelta(days=7) < t <= sent)
            assert cap.per_day is None or day <= cap.per_day, (sent, every)
            assert cap.per_week is None or week <= cap.per_week, (sent, every)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(doc=workflows(), path_choice=st.integers(0, 10_000), value=json_values)
def test_parser_refuses_damaged_documents_only_with_invalid_workflow(
    doc: dict[str, Any], path_choice: int, value: Any
) -> None:
    """Any single value replaced by arbitrary JSON: a Workflow or an InvalidWorkflow,
    never another exception."""
    holders: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                holders.append((node, key))
                walk(child)
        elif isinstance(node, list):
            for i, child in enumerate(node):
                holders.append((node, i))
                walk(child)

    walk(doc)
    holder, key = holders[path_choice % len(holders)]
    holder[key] = value
    try:
        parse_workflow(doc)
    except InvalidWorkflow as exc:
        refusal: InvalidWorkflow | None = exc
    else:
        refusal = None
    assert refusal is None or (refusal.status == 422 and refusal.message)


@settings(max_examples=200, deadline=None)
@given(doc=json_values)
def test_parser_on_arbitrary_json(doc: Any) -> None:
    with contextlib.suppress(InvalidWorkflow):
        parse_workflow(doc)


DEFECTS = ["dangling", "missing_branch", "unknown_template", "bad_duration", "bad_percent"]


@settings(max_examples=200, deadline=None)
@given(doc=workflows(), pick=st.integers(0, 10_000), defect=st.sampled_from(DEFECTS))
def test_a_defect_in_any_step_is_reported_on_that_step(
    doc: dict[str, Any], pick: int, defect: str
) -> None:
    """Break one step of a valid workflow in one way: the refusal names that step."""
    kinds = {
        "dangling": ["send_email", "update_attribute", "add_to_list", "webhook", "wait"],
        "missing_branch": ["condition", "wait_for_event"],
        "unknown_template": ["send_email"],
        "bad_duration": ["wait", "wait_for_event"],
        "bad_percent": ["split"],
    }[defect]
    candidates = [s for s in doc["steps"] if s["type"] in kinds]
    if not candidates:
        return
    step = candidates[pick % len(candidates)]
    if defect == "dangling":
        step["next"] = "no-such-step"
    elif defect == "missing_branch":
        del step["no" if step["type"] == "condition" else "on_event"]
    elif defect == "unknown_template":
        step["template"] = "deleted"
    elif defect == "bad_duration":
        step["duration" if step["type"] == "wait" else "timeout"] = {"minutes": 0}
    else:
        step["branches"][0]["percent"] += 1
    ctx = WorkflowContext(templates=frozenset({"a", "b"}))
    try:
        parse_workflow(doc, ctx)
    except InvalidWorkflow as exc:
        refusal: InvalidWorkflow | None = exc
    else:
        refusal = None
    assert refusal is not None
    index = doc["steps"].index(step)
    assert refusal.field is not None and refusal.field.startswith(f"steps[{index}]")
    assert f"step {step['id']!r}" in refusal.message
