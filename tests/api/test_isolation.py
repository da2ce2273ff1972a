"""A key of workspace A can neither read nor write B's data through ANY endpoint.

Every ``APIRoute`` under ``/api/`` is found in ``app.routes`` and called with A's admin key:

* ids in the path are B's, and every mix of A's and B's (A's list with B's contact, ...):
  the answer must be 404;
* list routes are read as they are and with B's ids as filters: 200, and nothing of B
  (every text of B's seed carries the marker "zebra") may appear;
* create and upsert routes get B's natural keys (an email, a domain, a list name): they must
  succeed in A, since a conflict would reveal that B holds them.

Afterwards every row of B, in every table with a ``workspace_id``, is as it was. Then the
same probes are replayed with B's own key on B's ids and must succeed, which proves that
each 404 above came from isolation, not from a probe the route would refuse anyway.

A route this test cannot fill (a path parameter it has no value for, a body it has no
example of) fails the test: add it to ``BODIES`` / ``Seed.ids``, or list it in
``NOT_GENERIC`` with the reason and a test of its own. Routes added later are covered or
consciously exempted, never silently skipped.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from fastapi.testclient import TestClient

from postwise.api.problems import PROBLEM_JSON
from postwise.campaigns.store import create_campaign
from postwise.contacts.actions import upsert_contacts
from postwise.contacts.attributes import define_attribute
from postwise.contacts.companies import create_company
from postwise.contacts.lists import ConsentInput, create_list, subscribe
from postwise.delivery import outbox
from postwise.delivery.preferences import create_topic
from postwise.messages.store import TemplateInput, create_template
from postwise.segments.membership import refresh as refresh_segment
from postwise.segments.store import SegmentInput, create_segment
from postwise.storage.database import Database
from postwise.storage.tables import (
    BounceAlert,
    BounceRecord,
    CapturedMessage,
    DomainBlock,
    Event,
    InboundMessage,
    Suppression,
)
from postwise.workflows.store import create_webhook_secret, create_workflow
from postwise.workspaces.actions import create_api_key, create_workspace
from tests.api.conftest import ClientFactory
from tests.api.support import snapshot

MARKER = "zebra"  # every text of B's seed holds it; no answer to A may
PEOPLE = {"field": "contact.first_name", "op": "contains", "value": " "}  # all of the seed
FLOW = {
    "version": 1,
    "name": "flow",
    "triggers": [{"type": "manual"}],
    "steps": [{"id": "wait_1d", "type": "wait", "duration": {"days": 1}}],
}


@dataclass
class Seed:
    workspace_id: int
    admin_key: str
    emails: list[str]
    domains: list[str]
    lists: list[str]
    attributes: list[str]
    # path or query parameter name -> this workspace's object
    ids: dict[str, Any] = field(default_factory=dict)


def seed(db: Database, tag: str) -> Seed:
    """Two of everything, each text marked with ``tag``; one pending membership to confirm."""
    with db.system() as s:
        ws = create_workspace(s, f"{tag.title()} Ltd")
        key = create_api_key(s, ws.workspace_id, ["contacts:read"], name=f"{tag} reporting key")
        mail = CapturedMessage(
            workspace_id=ws.workspace_id,
            mail_from=f"news@{tag}-corp.com",
            rcpt_to=[f"ann@{tag}-corp.com"],
            subject=f"{tag} launch",
            raw=f"From: news@{tag}-corp.com\r\nSubject: {tag} launch\r\n\r\nHi {tag}\r\n".encode(),
        )
        s.add(mail)
        s.flush()
        message_id = mail.id
    out = Seed(
        workspace_id=ws.workspace_id,
        admin_key=ws.api_key,
        emails=[f"{name}@{tag}-corp.com" for name in ("ann", "bob", "cat")],
        domains=[f"{tag}-corp.com", f"{tag}-labs.com", f"{tag}-works.com"],
        lists=[f"{tag} news", f"{tag} events"],
        attributes=[f"{tag}_score", f"{tag}_tier"],
    )
    with db.tenant(ws.workspace_id) as s:
        define_attribute(s, "contact", out.attributes[0], "number", f"{tag} score")
        tier = define_attribute(s, "company", out.attributes[1], "string", f"{tag} tier")
        company = create_company(
            s, {"domain": out.domains[0], "name": f"{tag} Corp", "attributes": {tier.name: tag}}
        )
        for domain in out.domains[1:]:
            create_company(s, {"domain": domain, "name": f"{tag} {domain}"})
        rows = [
            {"email": email, "first_name": f"{tag} {i}", "attributes": {out.attributes[0]: i}}
            for i, email in enumerate(out.emails)
        ]
        ann, bob, _ = (r.contact_id for r in upsert_contacts(s, rows, source="api"))
        assert ann and bob
        news = create_list(s, {"name": out.lists[0], "description": tag, "double_opt_in": True})
        create_list(s, {"name": out.lists[1]})
        subscribe(s, news.id, ann, ConsentInput("form", "198.51.100.7", f"{tag} consent"))
        subscribe(s, news.id, bob, ConsentInput("api"), confirmed=True)
        s.add(Event(contact_id=ann, type="track", name=f"{tag} signup", properties={"t": tag}))
        blocked = Suppression(kind="address", value=out.emails[0], reason="manual", note=tag)
        s.add(blocked)
        s.flush()
        suppression_id = blocked.id
        template = create_template(
            s,
            TemplateInput(
                name=f"{tag} welcome",
                subject=f"{tag} hello {{{{ contact.first_name }}}}",
                html=f"<p>{tag}</p>",
            ),
        )
        [outbox_id] = outbox.enqueue(
            s, [outbox.NewMessage(email=out.emails[1], contact_id=bob, data={"t": tag})]
        )
        bounce = BounceRecord(
            outbox_id=outbox_id,
            contact_id=bob,
            email=out.emails[1],
            domain=out.domains[0],
            campaign_key=f"{tag} launch",
            source="smtp",
            kind="bounce",
            reason="userunknown",
            hard=True,
            diagnostic=f"550 5.1.1 {tag} unknown",
            verdict="kept_filter_block",
        )
        block = DomainBlock(domain=out.domains[0], evidence={"note": tag})
        alert = BounceAlert(kind="filter_block", domain=out.domains[0], message=f"{tag} alert")
        s.add_all([bounce, block, alert])
        s.add(
            InboundMessage(
                workspace_id=ws.workspace_id,
                source="http",
                kind="unparsed",
                parsed=False,
                unparsed_reason=f"{tag} truncated",
                subject=f"{tag} bounce",
                raw=f"Subject: {tag}\r\n".encode(),
            )
        )
        s.flush()
        people = create_segment(s, SegmentInput(f"{out.lists[0]} people", PEOPLE), refresh=False)
        refresh_segment(s, people.id)
        people_id = people.id
        topic_key = f"{tag}-news"
        create_topic(s, topic_key, f"{tag} news")
    out.ids = {
        "contact_id": ann,
        "company_id": company.id,
        "list_id": news.id,
        "attribute_id": tier.id,
        "email": out.emails[0],
        "message_id": message_id,
        "key_id": key.id,
        "suppression_id": suppression_id,
        "template_id": template.id,
        "outbox_id": outbox_id,
        "record_id": bounce.id,
        "block_id": block.id,
        "alert_id": alert.id,
        "segment_id": people_id,
        "topic_key": topic_key,
    }
    with db.tenant(ws.workspace_id) as s:
        out.ids["workflow_id"] = create_workflow(
            s, f"{tag}-flow", {**FLOW, "name": f"{tag} flow"}
        ).id
        out.ids["secret_name"] = f"{tag}-sales"
        create_webhook_secret(s, out.ids["secret_name"])
        out.ids["campaign_id"] = create_campaign(
            s,
            {
                "key": f"{tag}-launch",
                "name": f"{tag} launch",
                "template_id": template.id,
                "audience": {"list_ids": [news.id]},
            },
        ).id
    return out


@dataclass(frozen=True)
class Probe:
    body: Any = None
    expect: frozenset[int] = frozenset({404})
    names_b: bool = False  # the body names one of B's objects by id or key


def created(*statuses: int) -> frozenset[int]:
    return frozenset(statuses)


INLINE = {"subject": "Hello", "text": "Hi"}

# A valid body per operation that takes one. Collection writes use B's natural keys and
# must succeed in A; bodies under a path with ids only need to pass validation.
BODIES: dict[tuple[str, str], Callable[[Seed, Seed], list[Probe]]] = {
    ("POST", "/api/contacts"): lambda a, b: [Probe({"email": b.emails[0]}, created(201))],
    ("PUT", "/api/contacts"): lambda a, b: [
        Probe({"email": b.emails[1], "first_name": "Mallory"}, created(201))
    ],
    ("PATCH", "/api/contacts/{contact_id}"): lambda a, b: [Probe({"first_name": "Mallory"})],
    ("POST", "/api/contacts/bulk"): lambda a, b: [
        Probe({"contacts": [{"email": b.emails[2]}], "list": b.ids["list_id"]}, names_b=True),
        Probe({"contacts": [{"email": b.emails[2]}], "list": b.lists[1]}, created(200)),
    ],
    ("POST", "/api/companies"): lambda a, b: [Probe({"domain": b.domains[1]}, created(201))],
    ("PUT", "/api/companies"): lambda a, b: [
        Probe({"domain": b.domains[2], "name": "Mallory"}, created(201))
    ],
    ("PATCH", "/api/companies/{company_id}"): lambda a, b: [Probe({"name": "Mallory"})],
    ("POST", "/api/lists"): lambda a, b: [Probe({"name": b.lists[0]}, created(201))],
    ("PATCH", "/api/lists/{list_id}"): lambda a, b: [Probe({"name": "Mallory"})],
    ("POST", "/api/lists/{list_id}/members"): lambda a, b: [
        Probe({"contact_id": b.ids["contact_id"]}, names_b=True),
        Probe({"email": b.emails[0]}, names_b=True),
    ],
    ("PUT", "/api/lists/{list_id}/members/{contact_id}"): lambda a, b: [
        Probe({"source": "api", "confirmed": True})
    ],
    ("POST", "/api/attributes"): lambda a, b: [
        Probe({"entity": "contact", "name": b.attributes[0], "type": "string"}, created(201))
    ],
    ("PATCH", "/api/attributes/{attribute_id}"): lambda a, b: [Probe({"description": "Mallory"})],
    ("POST", "/api/api-keys"): lambda a, b: [
        Probe({"scopes": ["contacts:read"], "name": f"{MARKER} reporting key"}, created(201))
    ],
    ("POST", "/api/suppressions"): lambda a, b: [Probe({"email": b.emails[0]}, created(201))],
    ("POST", "/api/privacy/erase"): lambda a, b: [Probe({"email": b.emails[1]}, created(200))],
    ("POST", "/api/templates"): lambda a, b: [
        Probe({"name": f"{b.lists[0]} welcome", "subject": "Hi", "html": "<p>x</p>"}, created(201))
    ],
    ("POST", "/api/templates/validate"): lambda a, b: [
        Probe({"name": "check", "subject": "Hi", "html": "<p>x</p>"}, created(200))
    ],
    ("PATCH", "/api/templates/{template_id}"): lambda a, b: [Probe({"subject": "Mallory"})],
    ("POST", "/api/templates/{template_id}/preview"): lambda a, b: [
        Probe({"contact_id": b.ids["contact_id"]}, names_b=True)
    ],
    ("POST", "/api/messages"): lambda a, b: [
        Probe({"contact_id": b.ids["contact_id"], "template": INLINE}, names_b=True),
    ],
    ("POST", "/api/lists/{list_id}/send"): lambda a, b: [Probe({"template": INLINE})],
    ("POST", "/api/topics"): lambda a, b: [
        Probe({"key": b.ids["topic_key"], "name": "Mallory"}, created(201))
    ],
    ("PATCH", "/api/topics/{topic_key}"): lambda a, b: [Probe({"name": "Mallory"})],
    ("POST", "/api/contacts/{contact_id}/readmit"): lambda a, b: [
        Probe({"source": "api", "text": "yes, again"})
    ],
    ("POST", "/api/segments"): lambda a, b: [
        Probe({"name": f"{b.lists[0]} people", "definition": PEOPLE}, created(201))
    ],
    ("POST", "/api/segments/validate"): lambda a, b: [
        Probe({"definition": PEOPLE}, created(200)),
        Probe({"definition": {"segment": b.ids["segment_id"]}}, created(422)),
    ],
    ("POST", "/api/segments/preview"): lambda a, b: [
        Probe({"definition": {"list": b.ids["list_id"]}}, created(200)),
        Probe({"definition": {"segment": b.ids["segment_id"]}}, created(422)),
    ],
    ("PATCH", "/api/segments/{segment_id}"): lambda a, b: [Probe({"description": "Mallory"})],
    ("POST", "/api/workflows"): lambda a, b: [
        Probe({"key": b.lists[0].split()[0] + "-flow", "definition": FLOW}, created(201))
    ],
    ("POST", "/api/workflows/validate"): lambda a, b: [Probe({"definition": FLOW}, created(200))],
    ("POST", "/api/workflows/install"): lambda a, b: [Probe({"playbook": "welcome"}, created(201))],
    ("PUT", "/api/workflows/{workflow_id}"): lambda a, b: [Probe({"definition": FLOW})],
    ("POST", "/api/workflows/{workflow_id}/enrollments"): lambda a, b: [
        Probe({"contact_id": b.ids["contact_id"]}, names_b=True)
    ],
    ("POST", "/api/workflows/webhook-secrets"): lambda a, b: [
        Probe({"name": b.ids["secret_name"]}, created(201))
    ],
    ("POST", "/api/campaigns"): lambda a, b: [
        Probe({"key": b.lists[0].split()[0] + "-launch", "name": "x"}, created(201))
    ],
    ("PATCH", "/api/campaigns/{campaign_id}"): lambda a, b: [Probe({"name": "Mallory"})],
    ("POST", "/api/campaigns/{campaign_id}/test-send"): lambda a, b: [
        Probe({"emails": [b.emails[0]]})
    ],
}

# (method, path) -> why the generic probes cannot exercise it and where it is tested.
NOT_GENERIC: dict[tuple[str, str], str] = {
    ("POST", "/api/imports"): "multipart upload; tests/api/test_imports.py (isolation tests)",
    ("GET", "/api/imports/{import_id}"): "import runs are seeded by uploads; test_imports.py",
    ("GET", "/api/imports/{import_id}/report"): "needs an import with rejects; test_imports.py",
    ("GET", "/api/outbox/captured/{name}"): "a file of the capture maildir, not a row; "
    "tests/api/test_messages.py (another workspace's file is 404)",
    ("POST", "/api/campaigns/{campaign_id}/schedule"): "needs a verified sender and a "
    "postal address; tests/campaigns/test_api.py (another workspace's campaign is 404)",
    ("POST", "/api/campaigns/{campaign_id}/pause"): "needs a scheduled campaign; "
    "tests/campaigns/test_api.py",
    ("POST", "/api/campaigns/{campaign_id}/resume"): "needs a paused campaign; "
    "tests/campaigns/test_api.py",
    ("GET", "/api/analytics/uplift"): "404 until a job stored a result; "
    "tests/analytics/test_uplift.py (A's stored uplift is 404 for B's key)",
    ("POST", "/api/analytics/uplift"): "answers 202 and queues a job for the key's workspace; "
    "tests/analytics/test_uplift.py",
}

# A value of each parameter that names nothing anywhere: B's value must get the same answer.
NOBODY: dict[str, Any] = {"email": "nobody@unknown.example"}
NO_ID = 2**62


def api_routes(app: FastAPI) -> Iterator[tuple[str, RouteContext]]:
    """Every operation under /api/ in ``app.routes``, included routers flattened."""
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute) and route.path_format.startswith("/api/"):
            for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
                yield method, route


def path_params(route: RouteContext) -> list[str]:
    return re.findall(r"\{(\w+)\}", route.path_format)


def query_params(dependant: Dependant) -> dict[str, bool]:
    """Query parameter name -> required, including those of sub-dependencies."""
    names = {p.alias: p.field_info.is_required() for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= query_params(sub)
    return names


def fill(route: RouteContext, values: dict[str, Any]) -> str:
    return re.sub(
        r"\{(\w+)\}", lambda m: quote(str(values[m.group(1)]), safe="@"), route.path_format
    )


def order(item: tuple[str, RouteContext]) -> tuple[int, str]:
    """Reads first and writes to collections last, so that A's own new rows (named with B's
    keys) never meet a later probe; every probe in between must be refused."""
    method, route = item
    rank = 0 if method == "GET" else 1 if path_params(route) else 2
    return rank, f"{route.path_format} {method}"


def send(client: TestClient, method: str, url: str, probe: Probe, **params: Any) -> httpx.Response:
    kwargs: dict[str, Any] = {"params": params} if params else {}
    if probe.body is not None:
        kwargs["json"] = probe.body
    return client.request(method, url, **kwargs)


def answer(response: httpx.Response, value: Any) -> tuple[int, str]:
    """Status and body with the echoed parameter value masked, for comparing two answers."""
    text = response.text
    if isinstance(value, str):
        text = text.replace(value, "<value>")
    return response.status_code, text


@dataclass
class Sweep:
    """A's admin key against B's objects; collects what went wrong and what to replay."""

    as_a: TestClient
    a: Seed
    b: Seed
    problems: list[str] = field(default_factory=list)
    replay: list[tuple[str, RouteContext, int]] = field(default_factory=list)

    def route(self, method: str, route: RouteContext) -> None:
        where = f"{method} {route.path_format}"
        names = path_params(route)
        queries = query_params(route.dependant)
        unknown = [n for n in names if n not in self.b.ids]
        unknown += [n for n, required in queries.items() if required and n not in self.b.ids]
        if unknown:
            self.problems.append(
                f"{where}: no value for parameter(s) {unknown}; add them to seed() ids "
                "or list the route in NOT_GENERIC with a reason"
            )
        elif route.body_field is not None and (method, route.path_format) not in BODIES:
            self.problems.append(
                f"{where}: takes a body; add an example to BODIES or list the route in "
                "NOT_GENERIC with a reason"
            )
        elif names:
            self.objects(method, route, names)
        else:
            self.collection(method, route, queries)

    def probes(self, method: str, route: RouteContext, owner: Seed) -> list[Probe]:
        if route.body_field is None:
            return [Probe()]
        return BODIES[(method, route.path_format)](self.a, owner)

    def objects(self, method: str, route: RouteContext, names: list[str]) -> None:
        """Every mix of A's and B's ids in the path (and B's ids in the body): 404."""
        for owners in itertools.product((self.a, self.b), repeat=len(names)):
            url = fill(route, {n: o.ids[n] for n, o in zip(names, owners, strict=True)})
            for index, probe in enumerate(self.probes(method, route, self.b)):
                if self.b not in owners and not probe.names_b:
                    continue  # only A's own objects: not an isolation case
                response = send(self.as_a, method, url, probe)
                if response.status_code != 404:
                    self.problems.append(
                        f"{method} {url} {probe.body}: {response.status_code}, expected 404: "
                        f"{response.text[:200]}"
                    )
                elif not response.headers["content-type"].startswith(PROBLEM_JSON):
                    self.problems.append(f"{method} {url}: the 404 is not problem+json")
                if self.a not in owners:
                    self.replay.append((method, route, index))

    def collection(self, method: str, route: RouteContext, queries: dict[str, bool]) -> None:
        """Lists show nothing of B; creates with B's keys succeed; B's ids as filters
        are answered exactly as an id that exists nowhere."""
        where = f"{method} {route.path_format}"
        if not any(queries.values()):
            for probe in self.probes(method, route, self.b):
                expect = probe.expect if route.body_field else created(200)
                response = send(self.as_a, method, route.path_format, probe)
                if response.status_code not in expect:
                    self.problems.append(
                        f"{where} {probe.body}: {response.status_code}, expected "
                        f"{sorted(expect)}: {response.text[:200]}"
                    )
                if method == "GET" and MARKER in response.text.lower():
                    self.problems.append(f"{where}: shows B's data: {response.text[:300]}")
        if method != "GET":
            return
        required = {n: self.a.ids[n] for n, needed in queries.items() if needed}
        for name in sorted(queries.keys() & self.b.ids.keys()):
            theirs = send(self.as_a, method, route.path_format, Probe(),
                          **{**required, name: self.b.ids[name]})  # fmt: skip
            nobody = NOBODY.get(name, NO_ID)
            baseline = send(self.as_a, method, route.path_format, Probe(),
                            **{**required, name: nobody})  # fmt: skip
            if answer(theirs, self.b.ids[name]) != answer(baseline, nobody):
                self.problems.append(
                    f"{where}?{name}=<B's>: {theirs.status_code} {theirs.text[:300]} differs "
                    f"from the answer for an unknown value: {baseline.text[:300]}"
                )


def test_a_key_of_one_workspace_reaches_nothing_of_another(
    app: FastAPI, db: Database, make_client: ClientFactory
) -> None:
    a, b = seed(db, "acme"), seed(db, MARKER)
    for name in a.ids:
        assert a.ids[name] != b.ids[name], f"{name} must differ between workspaces"
    before = snapshot(db, b.workspace_id)

    routes = sorted(api_routes(app), key=order)
    assert {(m, r.path_format) for m, r in routes} >= {
        ("GET", "/api/contacts"),
        ("POST", "/api/contacts/bulk"),
        ("DELETE", "/api/lists/{list_id}/members/{contact_id}"),
        ("GET", "/api/attributes/{attribute_id}"),
        ("GET", "/api/contacts/{contact_id}/events"),
        ("GET", "/api/events/catalog"),
    }
    sweep = Sweep(make_client(app, a.admin_key), a, b)
    for method, route in routes:
        if (method, route.path_format) not in NOT_GENERIC:
            sweep.route(method, route)
    assert not sweep.problems, "\n".join(sweep.problems)
    assert snapshot(db, b.workspace_id) == before, "a request with A's key changed B's rows"

    # Each refused probe, sent by the owner to a fresh copy of B, succeeds: so the 404s
    # above came from isolation, not from probes the route refuses anyway.
    failed = []
    for method, route, index in sweep.replay:
        c = seed(db, MARKER)
        probe = sweep.probes(method, route, c)[index]
        url = fill(route, c.ids)
        response = send(make_client(app, c.admin_key), method, url, probe)
        if not response.is_success:
            failed.append(f"{method} {url} {probe.body}: {response.status_code} {response.text}")
    assert not failed, "probes that fail for the owner prove nothing:\n" + "\n".join(failed)
