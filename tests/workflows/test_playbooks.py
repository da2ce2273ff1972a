"""Every shipped playbook over 60 simulated days for synthetic contacts: the emails, their
local times, the branches, the other commands and the exit reasons, asserted exactly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from postwise.messages.templates import TemplateSource, compile_template
from postwise.workflows.definition import InvalidWorkflow, WorkflowContext
from postwise.workflows.outline import outline
from postwise.workflows.playbooks import KEYS, playbook, playbooks
from postwise.workflows.references import workflow_references
from tests.workflows.simulate import (
    AddToListCommand,
    CallWebhookCommand,
    Contact,
    Event,
    SegmentEntry,
    Subscribed,
    UnsubscribeCommand,
    run,
)


def utc(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


START = utc(3, 1)


def test_every_playbook_loads_parses_and_names_its_templates() -> None:
    assert [p.key for p in playbooks()] == list(KEYS)
    for book in playbooks():
        params = {"inactive_segment": 7} if book.key == "reengagement_sunset" else None
        seeds = {t.key for t in book.templates(params)}
        doc = book.document(params)
        sent = {s["template"] for s in doc["steps"] if s["type"] == "send_email"}
        assert sent == seeds, book.key
        # Installing into a workspace checks the templates and lists it names.
        lists = frozenset({"Newsletter", "Sales Qualified Lead"})
        book.workflow(params, WorkflowContext(templates=frozenset(seeds), lists=lists))
        for seed in book.templates(params):
            assert "${" not in seed.html + seed.subject, (book.key, seed.key)
    with pytest.raises(KeyError):
        playbook("nope")


def test_params_are_checked() -> None:
    with pytest.raises(InvalidWorkflow) as exc:
        playbook("reengagement_sunset").workflow()
    assert exc.value.code == "missing_param" and exc.value.field == "inactive_segment"
    with pytest.raises(InvalidWorkflow) as exc:
        playbook("welcome").workflow({"colour": "red"})
    assert exc.value.code == "unknown_param"
    with pytest.raises(InvalidWorkflow) as exc:
        playbook("welcome").workflow(ctx=WorkflowContext(lists=frozenset({"Other"})))
    assert exc.value.code == "unknown_list" and exc.value.field == "triggers[0].list"


def test_welcome_series() -> None:
    wf = playbook("welcome").workflow()
    berlin = run(
        wf, Contact("berlin", [Subscribed(utc(3, 2, 13), "Newsletter")], "Europe/Berlin"), START
    )
    assert berlin.mails == [
        ("2026-03-02 14:00", "welcome_1"),
        ("2026-03-04 14:00", "welcome_2"),
        ("2026-03-07 14:00", "welcome_3"),
    ]
    assert berlin.ends == [("2026-03-07 14:00", "completed")]
    # 22:30 in New York is quiet: deferred to 08:00; the US switch to summer time on
    # 8 March keeps the following mails on UTC spacing (two and three days later).
    new_york = run(
        wf,
        Contact("ny", [Subscribed(utc(3, 6, 3, 30), "Newsletter")], "America/New_York"),
        START,
    )
    assert new_york.mails == [
        ("2026-03-06 08:00", "welcome_1"),
        ("2026-03-08 09:00", "welcome_2"),
        ("2026-03-11 09:00", "welcome_3"),
    ]
    # Two campaign mails in the last 24 hours: the frequency cap (2 a day) defers the
    # welcome to 24 hours after the older one.
    capped = run(
        wf,
        Contact(
            "capped",
            [Subscribed(utc(3, 2, 13), "Newsletter")],
            other_sends=[utc(3, 2, 10), utc(3, 2, 12)],
        ),
        START,
    )
    assert capped.mails == [
        ("2026-03-03 10:00", "welcome_1"),
        ("2026-03-05 10:00", "welcome_2"),
        ("2026-03-08 10:00", "welcome_3"),
    ]
    # Re-entry "once": subscribing again later starts nothing.
    again = run(
        wf,
        Contact(
            "again",
            [Subscribed(utc(3, 2, 13), "Newsletter"), Subscribed(utc(3, 20, 13), "Newsletter")],
        ),
        START,
    )
    assert len(again.mails) == 3
    other_list = run(wf, Contact("other", [Subscribed(utc(3, 2, 13), "Offers")]), START)
    assert other_list.mails == []


def lead(name: str, *booking: Event) -> Contact:
    download = Event(
        utc(3, 2, 10), "Lead Magnet Downloaded", {"title": "B2B email guide", "url": "https://x"}
    )
    return Contact(name, [download, *booking])


def test_lead_nurture() -> None:
    wf = playbook("lead_nurture").workflow()
    first_week = [
        ("2026-03-02 10:00", "lead_download"),
        ("2026-03-05 10:00", "lead_case_study"),
        ("2026-03-09 10:00", "lead_consultation"),
    ]
    # Books a demo on day 8: Sales Qualified Lead list, webhook to sales, no more mail.
    booked = run(wf, lead("booked", Event(utc(3, 10, 15), "Demo Booked")), START)
    assert booked.mails == first_week
    assert [(at, c.list) for at, c in booked.actions(AddToListCommand)] == [
        ("2026-03-10 15:00", "Sales Qualified Lead")
    ]
    hooks = booked.actions(CallWebhookCommand)
    assert [(at, c.url, c.secret, c.key) for at, c in hooks] == [
        (
            "2026-03-10 15:00",
            "https://crm.example.com/hooks/postwise",
            "sales",
            "booked-1:notify_sales:1",
        )
    ]
    assert booked.ends == [("2026-03-10 15:00", "qualified")]
    assert booked.sends[0].data["events"]["Lead Magnet Downloaded"][0]["title"] == "B2B email guide"
    assert not booked.sends[0].marketing and booked.sends[1].marketing
    # Never books: testimonials on day 14 and the offer on day 21.
    silent = run(wf, lead("silent"), START)
    assert silent.mails == [
        *first_week,
        ("2026-03-16 10:00", "lead_testimonials"),
        ("2026-03-23 10:00", "lead_offer"),
    ]
    assert silent.actions(AddToListCommand) == [] and silent.actions(CallWebhookCommand) == []
    assert silent.ends == [("2026-03-23 10:00", "completed")]
    # "Consultation Booked" counts too, up to the last minute of the week.
    late = run(wf, lead("late", Event(utc(3, 16, 9, 59), "Consultation Booked")), START)
    assert late.mails == first_week and late.ends == [("2026-03-16 09:59", "qualified")]
    # At the deadline itself the timeout has won; a booking before the offer is not the
    # answer to it (the issue: "if the contact books one" after the offer).
    at_deadline = run(
        wf,
        lead("deadline", Event(utc(3, 5, 12), "Demo Booked"), Event(utc(3, 16, 10), "Demo Booked")),
        START,
    )
    assert at_deadline.mails == silent.mails
    assert at_deadline.actions(AddToListCommand) == []
    history = [(h.step, h.outcome) for h in at_deadline.states[-1].history]
    assert ("await_booking", "timeout") in history


def test_customer_onboarding() -> None:
    wf = playbook("onboarding").workflow()
    paris = run(
        wf, Contact("paris", [Event(utc(3, 2, 17, 30), "Account Created")], "Europe/Paris"), START
    )
    assert paris.mails == [
        ("2026-03-02 18:30", "onboarding_day0"),
        ("2026-03-03 10:00", "onboarding_day1"),
        ("2026-03-05 10:00", "onboarding_day3"),
        ("2026-03-09 10:00", "onboarding_day7"),
        ("2026-03-16 10:00", "onboarding_day14"),
    ]
    # Signed up at 23:30 the evening before in Los Angeles: day 0 is that local day; the
    # day-7 mail falls on the morning US summer time starts and is still 10:00 local.
    la = run(
        wf,
        Contact("la", [Event(utc(3, 2, 7, 30), "Account Created")], "America/Los_Angeles"),
        START,
    )
    assert la.mails == [
        ("2026-03-01 23:30", "onboarding_day0"),
        ("2026-03-02 10:00", "onboarding_day1"),
        ("2026-03-04 10:00", "onboarding_day3"),
        ("2026-03-08 10:00", "onboarding_day7"),
        ("2026-03-15 10:00", "onboarding_day14"),
    ]
    assert [s.at for s in la.sends[2:4]] == [utc(3, 4, 18), utc(3, 8, 17)]
    # An unknown time zone falls back to the policy zone (UTC).
    nowhere = run(wf, Contact("x", [Event(utc(3, 2, 9), "Account Created")], "Mars/Base"), START)
    assert nowhere.mails[1] == ("2026-03-03 10:00", "onboarding_day1")
    assert nowhere.ends == [("2026-03-16 10:00", "completed")]


LAMP = {"name": "Desk lamp", "price": 49, "quantity": 1}
BULB = {"name": "Bulb", "price": 5, "quantity": 3}


def test_cart_abandonment() -> None:
    wf = playbook("cart_abandonment").workflow()
    two_items = run(
        wf,
        Contact(
            "two",
            [
                Event(utc(3, 2, 12), "Product Added", LAMP),
                Event(utc(3, 2, 12, 20), "Product Added", BULB),
            ],
        ),
        START,
    )
    assert two_items.mails == [
        ("2026-03-02 13:00", "cart_reminder"),
        ("2026-03-03 13:00", "cart_incentive"),
    ]
    assert two_items.sends[0].data["events"]["Product Added"] == [LAMP, BULB]
    assert two_items.ends == [("2026-03-03 13:00", "completed")]
    # Ordered within the hour: the goal ends it, nothing is sent.
    quick = run(
        wf,
        Contact(
            "quick",
            [
                Event(utc(3, 2, 12), "Product Added", LAMP),
                Event(utc(3, 2, 12, 40), "Order Completed"),
            ],
        ),
        START,
    )
    assert quick.mails == [] and quick.ends == [("2026-03-02 12:40", "goal")]
    # Ordered after the reminder: no incentive.
    later = run(
        wf,
        Contact(
            "later",
            [Event(utc(3, 2, 12), "Product Added", LAMP), Event(utc(3, 3, 9), "Order Completed")],
        ),
        START,
    )
    assert later.mails == [("2026-03-02 13:00", "cart_reminder")]
    assert later.ends == [("2026-03-03 09:00", "goal")]
    # Added at 20:30: the reminder would fall at 21:30, in quiet hours, so it goes at 08:00.
    evening = run(wf, Contact("evening", [Event(utc(3, 2, 20, 30), "Product Added", LAMP)]), START)
    assert evening.mails == [
        ("2026-03-03 08:00", "cart_reminder"),
        ("2026-03-04 08:00", "cart_incentive"),
    ]
    # Cool-down of three days: a cart two days after the first journey ended starts
    # nothing, one five days after starts a new journey with new idempotency keys.
    again = run(
        wf,
        Contact(
            "again",
            [
                Event(utc(3, 2, 12), "Product Added", LAMP),
                Event(utc(3, 4, 12), "Product Added", BULB),
                Event(utc(3, 7, 12), "Product Added", BULB),
            ],
        ),
        START,
    )
    assert again.mails == [
        ("2026-03-02 13:00", "cart_reminder"),
        ("2026-03-03 13:00", "cart_incentive"),
        ("2026-03-07 13:00", "cart_reminder"),
        ("2026-03-08 13:00", "cart_incentive"),
    ]
    assert [s.key for s in again.sends] == [
        "again-1:reminder:1", "again-1:incentive:1", "again-2:reminder:1", "again-2:incentive:1",
    ]  # fmt: skip
    assert again.sends[2].data["events"]["Product Added"] == [BULB]


def test_trial_not_converted() -> None:
    book = playbook("trial_not_converted")
    wf = book.workflow()
    trial = Event(utc(3, 2, 9), "Trial Downloaded", {"product": "Pro"})
    never = run(wf, Contact("never", [trial]), START)
    assert never.mails == [
        ("2026-03-16 09:00", "trial_benefits"),
        ("2026-03-19 09:00", "trial_offer"),
    ]
    assert never.ends == [("2026-03-19 09:00", "completed")]
    bought = run(wf, Contact("bought", [trial, Event(utc(3, 12, 16), "Order Completed")]), START)
    assert bought.mails == [] and bought.ends == [("2026-03-12 16:00", "goal")]
    after_benefits = run(wf, Contact("ab", [trial, Event(utc(3, 17, 8), "Order Completed")]), START)
    assert after_benefits.mails == [("2026-03-16 09:00", "trial_benefits")]
    assert after_benefits.ends == [("2026-03-17 08:00", "goal")]
    seven = run(book.workflow({"trial_days": 7}), Contact("seven", [trial]), START)
    assert seven.mails == [
        ("2026-03-09 09:00", "trial_benefits"),
        ("2026-03-12 09:00", "trial_offer"),
    ]
    # A newsletter went out an hour before: one marketing mail a day defers the benefits
    # mail to 24 hours after the newsletter.
    capped = run(wf, Contact("capped", [trial], other_sends=[utc(3, 16, 8)]), START)
    assert capped.mails == [
        ("2026-03-17 08:00", "trial_benefits"),
        ("2026-03-20 08:00", "trial_offer"),
    ]


def human(at: datetime, name: str = "Email Opened") -> Event:
    return Event(at, name, {"machine": False, "machine_reason": None})


def machine(at: datetime) -> Event:
    return Event(at, "Email Opened", {"machine": True, "machine_reason": "apple_mpp"})


def test_reengagement_and_sunset() -> None:
    wf = playbook("reengagement_sunset").workflow({"inactive_segment": 7})
    enters = SegmentEntry(utc(3, 2, 10), 7)
    silent = run(wf, Contact("silent", [enters, machine(utc(3, 3, 10))]), START)
    assert silent.mails == [
        ("2026-03-02 10:00", "reengage_miss_you"),
        ("2026-03-09 10:00", "reengage_preferences"),
        ("2026-03-23 10:00", "reengage_last_call"),
    ]
    assert [(at, c.list) for at, c in silent.actions(UnsubscribeCommand)] == [
        ("2026-03-30 10:00", None)
    ]
    assert silent.ends == [("2026-03-30 10:00", "sunset")]
    clicked = run(
        wf,
        Contact("clicked", [enters, machine(utc(3, 5, 9)), human(utc(3, 12, 18), "Email Clicked")]),
        START,
    )
    assert clicked.mails == silent.mails[:2]
    assert clicked.ends == [("2026-03-12 18:00", "goal")]
    assert clicked.actions(UnsubscribeCommand) == []
    opened_late = run(wf, Contact("late", [enters, human(utc(3, 25, 7))]), START)
    assert opened_late.mails == silent.mails
    assert opened_late.actions(UnsubscribeCommand) == []
    assert opened_late.ends == [("2026-03-25 07:00", "goal")]
    other_segment = run(wf, Contact("other", [SegmentEntry(utc(3, 2, 10), 8)]), START)
    assert other_segment.mails == []


def test_birthday_and_anniversary() -> None:
    wf = playbook("birthday").workflow()
    feb = utc(2, 1)
    tokyo = run(
        wf, Contact("tokyo", timezone="Asia/Tokyo", attributes={"birthday": "1990-03-15"}), feb
    )
    assert tokyo.mails == [("2026-03-15 09:00", "birthday_greeting")]
    assert tokyo.sends[0].at == utc(3, 15, 0)
    leap = run(wf, Contact("leap", attributes={"birthday": "2000-02-29"}), feb)
    assert leap.mails == [("2026-02-28 09:00", "birthday_greeting")]
    may = run(wf, Contact("may", attributes={"birthday": "1985-05-01"}), feb)
    assert may.mails == []
    unknown = run(wf, Contact("none", attributes={"birthday": "soon"}), feb)
    assert unknown.mails == []
    anniversary = playbook("anniversary").workflow()
    customer = run(
        anniversary,
        Contact(
            "c",
            timezone="Europe/London",
            attributes={"first_purchase_date": "2024-03-10T15:22:00Z"},
        ),
        feb,
    )
    assert customer.mails == [("2026-03-10 09:00", "anniversary_greeting")]
    # The yearly journey runs for two years: one greeting each year, never two.
    two_years = run(wf, Contact("two", attributes={"birthday": "1990-03-15"}), feb, days=420)
    assert two_years.mails == [
        ("2026-03-15 09:00", "birthday_greeting"),
        ("2027-03-15 09:00", "birthday_greeting"),
    ]


def test_post_purchase() -> None:
    wf = playbook("post_purchase").workflow()
    order = Event(utc(3, 2, 15), "Order Completed", {"order_id": "A-1", "revenue": 120})
    # A second order while the first journey runs joins it; one after it ended starts a
    # new journey (re-entry "always").
    buyer = run(
        wf,
        Contact(
            "buyer",
            [order, Event(utc(3, 4, 15), "Order Completed", {"order_id": "A-2"}),
             Event(utc(3, 20, 15), "Order Completed", {"order_id": "A-3"})],
        ),
        START,
    )  # fmt: skip
    assert buyer.mails == [
        ("2026-03-02 15:00", "purchase_thanks"),
        ("2026-03-09 10:00", "purchase_cross_sell"),
        ("2026-03-20 15:00", "purchase_thanks"),
        ("2026-03-27 10:00", "purchase_cross_sell"),
    ]
    assert [o["order_id"] for o in buyer.sends[1].data["events"]["Order Completed"]] == [
        "A-1",
        "A-2",
    ]
    assert buyer.sends[2].data["events"]["Order Completed"] == [{"order_id": "A-3"}]
    assert buyer.ends == [("2026-03-09 10:00", "completed"), ("2026-03-27 10:00", "completed")]


def test_template_seeds_render_with_the_data_the_journeys_pass() -> None:
    """Every seed compiles in the real (sandboxed, strict) template engine and renders
    with the ``data`` a simulated journey hands to its sends."""
    journeys = {
        "cart_abandonment": run(
            playbook("cart_abandonment").workflow(),
            Contact(
                "c",
                [
                    Event(utc(3, 2, 12), "Product Added", LAMP),
                    Event(utc(3, 2, 12, 5), "Product Added", BULB),
                ],
            ),
            START,
        ),
        "lead_nurture": run(playbook("lead_nurture").workflow(), lead("l"), START),
        "post_purchase": run(
            playbook("post_purchase").workflow(),
            Contact("p", [Event(utc(3, 2, 15), "Order Completed", {"order_id": "A-1"})]),
            START,
        ),
    }
    rendered = {}
    for book in playbooks():
        params = {"inactive_segment": 7} if book.key == "reengagement_sunset" else None
        journey = journeys.get(book.key)
        data = journey.sends[0].data if journey is not None else {}
        for seed in book.templates(params):
            compiled = compile_template(
                TemplateSource(subject=seed.subject, preheader=seed.preheader, html=seed.html)
            )
            context = {
                "contact": {"first_name": "Ada"},
                "workspace": {"name": "Acme"},
                "data": data,
                "preferences_url": "https://acme.example/p",
            }
            parts = compiled.render(context)
            assert parts.subject and parts.html, seed.key
            rendered[seed.key] = parts
    reminder = rendered["cart_reminder"]
    assert "1 x Desk lamp (49)" in reminder.html and "3 x Bulb (5)" in reminder.html
    assert "COMEBACK10" in rendered["cart_incentive"].html
    assert rendered["lead_download"].subject == "Your download: B2B email guide"
    assert "order A-1" in rendered["purchase_thanks"].html
    assert rendered["welcome_1"].subject == "Welcome to Acme, Ada"


def test_references_of_the_playbooks() -> None:
    lead_refs = workflow_references(playbook("lead_nurture").workflow())
    assert lead_refs.trigger_events == {"Lead Magnet Downloaded"}
    assert lead_refs.live_events == {
        "Lead Magnet Downloaded",
        "Demo Booked",
        "Consultation Booked",
    }
    assert lead_refs.lists == {"Sales Qualified Lead"} and lead_refs.webhook_secrets == {"sales"}
    assert len(lead_refs.templates) == 5 and not lead_refs.segment_facts
    sunset = workflow_references(playbook("reengagement_sunset").workflow({"inactive_segment": 7}))
    assert sunset.trigger_segments == {7} and sunset.trigger_events == frozenset()
    assert sunset.live_events == {"Email Opened", "Email Clicked"}
    assert workflow_references(playbook("birthday").workflow()).date_attributes == {"birthday"}
    welcome = workflow_references(playbook("welcome").workflow())
    assert welcome.lists == {"Newsletter"}


def test_outline_reads_like_the_journey() -> None:
    assert outline(playbook("lead_nurture").workflow()) == [
        "Lead nurture",
        "Starts: the contact performs Lead Magnet Downloaded",
        "1. download_link: send 'lead_download' (transactional) -> wait_3d",
        "2. wait_3d: wait 3 days -> case_study",
        "3. case_study: send 'lead_case_study' -> wait_4d",
        "4. wait_4d: wait 4 days -> consultation_offer",
        "5. consultation_offer: send 'lead_consultation' -> await_booking",
        "6. await_booking: wait up to 7 days for Demo Booked or Consultation Booked: "
        "arrived -> to_sql, timed out -> testimonials",
        "7. to_sql: add to list 'Sales Qualified Lead' -> notify_sales",
        "8. notify_sales: call webhook https://crm.example.com/hooks/postwise "
        "(signed with 'sales') -> qualified",
        "9. qualified: exit (qualified)",
        "10. testimonials: send 'lead_testimonials' -> wait_7d",
        "11. wait_7d: wait 7 days -> limited_offer",
        "12. limited_offer: send 'lead_offer' -> end",
        "Re-entry: once",
        "Frequency cap: 2/day, 5/week",
        "Quiet hours: 21:00-08:00 local",
    ]
    for book in playbooks():
        params = {"inactive_segment": 7} if book.key == "reengagement_sunset" else None
        lines = outline(book.workflow(params))
        assert len(lines) >= len(book.document(params)["steps"]) + 3
    sunset = outline(playbook("reengagement_sunset").workflow({"inactive_segment": 7}))
    assert "Starts: the contact enters segment 7" in sunset
    assert "Goal: performs Email Opened or Email Clicked (leaves at once)" in sunset
    assert "7. sunset: unsubscribe from all marketing -> sunset_done" in sunset
    birthday = outline(playbook("birthday").workflow())
    assert birthday[1] == "Starts: every year on the contact's birthday, at 09:00 local time"
