"""The bounce API and the providers' webhooks over real HTTP (Starlette's TestClient):
raw intake, filters and pages, summaries, blocks, alerts; SES through SNS with real
RSA signatures (version 1 and 2) from a certificate made here, SendGrid with real
ECDSA signatures. Both databases."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from postwise.api.routes.bounces import sns_fetcher
from postwise.bounces import intake, webhooks
from postwise.core import clock
from postwise.storage.database import Database
from postwise.storage.tables import BounceRecord, Suppression
from postwise.workspaces.actions import create_api_key
from tests.api.conftest import AppFactory, make_app, make_client  # noqa: F401
from tests.bounces.scenario import (
    SECRET,
    Audience,
    audience,
    context,
    dsn,
    hard,
    message_id,
    minutes_after,
    verp,
)

Client = Callable[[FastAPI, str | None], TestClient]
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-bounces"


@pytest.fixture
def people(db: Database) -> Audience:
    return audience(db, ["ann@corp.example", "bob@corp.example", "cat@gmail.com"])


@pytest.fixture
def api(make_app: AppFactory) -> FastAPI:  # noqa: F811
    return make_app(secret_key=SECRET.decode())


def admin_key(db: Database, ws: int) -> str:
    with db.system() as s:
        return create_api_key(s, ws, ["admin"], name="bounces").key


def test_raw_intake_and_the_record_api(
    db: Database,
    people: Audience,
    api: FastAPI,
    make_client: Client,  # noqa: F811
) -> None:
    client = make_client(api, admin_key(db, people.workspace_id))
    ann = "ann@corp.example"
    posted = client.post(
        "/api/bounces/raw",
        content=dsn(ann, return_path=verp(people.outbox[ann])),
        headers={"content-type": "message/rfc822"},
    )
    assert posted.status_code == 200, posted.text
    body = posted.json()
    assert body["kind"] == "bounce" and body["outbox_id"] == people.outbox[ann]
    assert body["verdicts"] == ["suppressed"]
    assert client.post("/api/bounces/raw", content=b"\x00garbage").json()["record_ids"] == []
    kept = client.get("/api/bounces/inbound", params={"parsed": "false"}).json()["data"]
    assert [(m["source"], m["kind"], m["raw_size"]) for m in kept] == [("http", "unparsed", 8)]
    assert kept[0]["unparsed_reason"]
    inbound = client.get("/api/bounces/inbound", params={"kind": "bounce"}).json()["data"]
    assert [m["addresses"] for m in inbound] == [[ann]]
    # More records, straight through intake: a soft one and a complaint.
    ctx = context(db)
    bob, cat = "bob@corp.example", "cat@gmail.com"
    intake.record_parsed(
        ctx, hard(bob, "4.2.2", reason="mailboxfull", is_hard=False), raw=b"",
        source="smtp", envelope=intake.Envelope("", (verp(people.outbox[bob]),)),
    )  # fmt: skip
    intake.record_parsed(
        ctx, hard(cat), raw=b"", source="smtp",
        envelope=intake.Envelope("", (verp(people.outbox[cat]),)),
    )  # fmt: skip

    listed = client.get("/api/bounces").json()
    assert [r["email"] for r in listed["data"]] == [ann, bob, cat]
    assert listed["data"][0]["campaign_key"] == "launch" and listed["data"][0]["hard"] is True
    assert [r["email"] for r in client.get("/api/bounces?domain=corp.example").json()["data"]] == [
        ann,
        bob,
    ]
    assert [r["email"] for r in client.get("/api/bounces?reason=mailboxfull").json()["data"]] == [
        bob
    ]
    assert client.get("/api/bounces?campaign_key=other").json()["data"] == []
    assert len(client.get("/api/bounces?hard=true").json()["data"]) == 2
    future = (clock.utcnow() + timedelta(hours=1)).isoformat()
    assert client.get("/api/bounces", params={"since": future}).json()["data"] == []
    assert len(client.get("/api/bounces", params={"until": future}).json()["data"]) == 3
    assert client.get("/api/bounces?kind=nonsense").status_code == 400
    first = client.get("/api/bounces?limit=2").json()
    assert len(first["data"]) == 2 and first["next_cursor"]
    rest = client.get("/api/bounces", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [r["email"] for r in rest["data"]] == [cat] and rest["next_cursor"] is None
    one = client.get(f"/api/bounces/{listed['data'][0]['id']}").json()
    assert one["diagnostic"] and one["evidence"]["tied_by"] == "verp"

    summary = {row["domain"]: row for row in client.get("/api/bounces/summary").json()}
    assert summary["corp.example"]["bounces"] == 2 and summary["corp.example"]["hard"] == 1
    assert summary["gmail.com"]["suppressed"] == 1

    urls = client.get("/api/bounces/webhooks").json()
    assert urls["ses"].startswith("http://127.0.0.1:8000/webhooks/ses/")
    token = urls["ses"].rsplit("/", 1)[1]
    assert urls["sendgrid"].endswith(f"/webhooks/sendgrid/{token}")


def test_domain_blocks_and_alerts_over_the_api(
    db: Database,
    api: FastAPI,
    make_client: Client,  # noqa: F811
) -> None:
    emails = [f"p{i:02d}@bigcorp.example" for i in range(20)]
    people = audience(db, emails)
    ctx = context(db, burst_min=5, burst_ratio=0.2)
    start = clock.utcnow()
    for i, email in enumerate(emails[:6]):
        intake.record_parsed(
            ctx, hard(email), raw=b"", source="smtp",
            envelope=intake.Envelope("", (verp(people.outbox[email]),)),
            now=minutes_after(start, i * 0.5),
        )  # fmt: skip
    client = make_client(api, admin_key(db, people.workspace_id))
    blocks = client.get("/api/bounces/domain-blocks?status=active").json()["data"]
    assert [b["domain"] for b in blocks] == ["bigcorp.example"]
    assert blocks[0]["per_minute"] == 6.0 and blocks[0]["evidence"]["burst"]["hard_bounces"] == 6
    alerts = client.get("/api/bounces/alerts?acknowledged=false").json()["data"]
    assert len(alerts) == 1 and "bigcorp.example" in alerts[0]["message"]
    acked = client.post(f"/api/bounces/alerts/{alerts[0]['id']}/acknowledge").json()
    assert acked["acknowledged_by"].startswith("api_key:")
    assert client.get("/api/bounces/alerts?acknowledged=false").json()["data"] == []
    cleared = client.post(f"/api/bounces/domain-blocks/{blocks[0]['id']}/clear").json()
    assert cleared["status"] == "cleared" and cleared["slow_until"] is None
    assert client.get("/api/bounces/domain-blocks?status=active").json()["data"] == []
    assert client.post("/api/bounces/domain-blocks/999999/clear").status_code == 404


# --- SES through SNS ----------------------------------------------------------------


def _certificate() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


class FakeAmazon:
    """Serves our certificate at CERT_URL and remembers the subscription confirmations."""

    def __init__(self) -> None:
        self.key, self.pem = _certificate()
        self.confirmed: list[str] = []

    def fetch(self, url: str) -> bytes:
        if url == CERT_URL:
            return self.pem
        self.confirmed.append(url)
        return b"<ConfirmSubscriptionResponse/>"

    def sign(self, message: dict[str, Any], version: str = "2") -> dict[str, Any]:
        message = {**message, "SignatureVersion": version, "SigningCertURL": CERT_URL}
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(webhooks.canonical_sns(message), padding.PKCS1v15(), digest)
        return {**message, "Signature": base64.b64encode(signature).decode()}


def _notification(note: dict[str, Any], message_id_: str) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": message_id_,
        "TopicArn": TOPIC,
        "Message": json.dumps(note),
        "Timestamp": "2026-11-24T08:00:00.000Z",
    }


def test_ses_notifications_through_sns_are_verified_and_recorded(
    db: Database,
    people: Audience,
    api: FastAPI,
    make_client: Client,  # noqa: F811
) -> None:
    amazon = FakeAmazon()
    api.dependency_overrides[sns_fetcher] = lambda: amazon.fetch
    key = admin_key(db, people.workspace_id)
    url = make_client(api, key).get("/api/bounces/webhooks").json()["ses"]
    path = url.removeprefix("http://127.0.0.1:8000")
    client = make_client(api, None)  # SNS has no API key: the URL's token is the credential

    confirm = amazon.sign(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "m-0",
            "Token": "tok",
            "TopicArn": TOPIC,
            "Message": "You have chosen to subscribe",
            "SubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription",
            "Timestamp": "2026-11-24T08:00:00.000Z",
        },
        version="1",
    )
    answer = client.post(path, content=json.dumps(confirm))
    assert answer.status_code == 200 and answer.json()["action"] == "confirmed"
    assert amazon.confirmed == [confirm["SubscribeURL"]]

    ann, cat = "ann@corp.example", "cat@gmail.com"
    bounce = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": ann,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
        },
        "mail": {"messageId": "ses-1", "source": verp(people.outbox[ann])},
    }
    signed = amazon.sign(_notification(bounce, "m-1"))
    answer = client.post(path, content=json.dumps(signed))
    assert answer.status_code == 200 and answer.json()["action"] == "recorded"
    assert client.post(path, content=json.dumps(signed)).json()["action"] == "duplicate"
    complaint = {
        "notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": cat}],
                      "complaintFeedbackType": "abuse"},
        "mail": {"messageId": "ses-2", "source": "news@sender.example",
                 "commonHeaders": {"messageId": message_id(people.outbox[cat])}},
    }  # fmt: skip
    answer = client.post(
        path, content=json.dumps(amazon.sign(_notification(complaint, "m-2"), "1"))
    )
    assert answer.json()["action"] == "recorded"
    with db.tenant(people.workspace_id) as s:
        rows = {r.email: r for r in s.scalars(select(BounceRecord))}
        assert (rows[ann].source, rows[ann].reason, rows[ann].hard) == ("ses", "userunknown", True)
        assert rows[ann].outbox_id == people.outbox[ann] and rows[ann].verdict == "suppressed"
        assert (rows[cat].kind, rows[cat].feedback_type) == ("complaint", "abuse")
        assert rows[cat].outbox_id == people.outbox[cat]
        assert {r.value: r.reason for r in s.scalars(select(Suppression))} == {
            ann: "bounced",
            cat: "complained",
        }

    # Forgeries: a changed message, a certificate from elsewhere, an unknown workspace.
    tampered = {**signed, "MessageId": "m-9", "Message": signed["Message"].replace(ann, "x@y.z")}
    assert client.post(path, content=json.dumps(tampered)).status_code == 401
    for bad_url in ("http://sns.eu-west-1.amazonaws.com/c.pem", "https://evil.example/c.pem",
                    "https://sns.amazonaws.com.evil.example/c.pem"):  # fmt: skip
        forged = {**signed, "SigningCertURL": bad_url, "MessageId": "m-8"}
        answer = client.post(path, content=json.dumps(forged))
        assert answer.status_code == 401 and answer.json()["code"] == "invalid_sns_url"
    assert client.post("/webhooks/ses/0011223344556677", content=b"{}").status_code == 404
    assert client.post(path, content=b"not json").status_code == 400


# --- SendGrid -------------------------------------------------------------------------


def test_sendgrid_events_are_verified_and_normalized(
    db: Database,
    people: Audience,
    make_app: AppFactory,  # noqa: F811
    make_client: Client,  # noqa: F811
) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    api = make_app(
        secret_key=SECRET.decode(), bounce_sendgrid_public_key=base64.b64encode(public).decode()
    )
    key = admin_key(db, people.workspace_id)
    path = make_client(api, key).get("/api/bounces/webhooks").json()["sendgrid"]
    path = path.removeprefix("http://127.0.0.1:8000")
    ann, bob, cat = "ann@corp.example", "bob@corp.example", "cat@gmail.com"
    events = [
        {"email": ann, "event": "bounce", "type": "bounce", "status": "5.1.1",
         "reason": "550 5.1.1 The email account that you tried to reach does not exist",
         "smtp-id": message_id(people.outbox[ann]), "sg_event_id": "e1", "timestamp": 1},
        {"email": bob, "event": "dropped", "reason": "Bounced Address", "sg_event_id": "e2"},
        {"email": cat, "event": "spamreport", "sg_event_id": "e3",
         "smtp-id": message_id(people.outbox[cat])},
        {"email": bob, "event": "delivered", "sg_event_id": "e4"},
    ]  # fmt: skip
    body = json.dumps(events).encode()
    timestamp = "1764000000"
    signature = base64.b64encode(
        private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    ).decode()
    headers = {webhooks.SENDGRID_SIGNATURE: signature, webhooks.SENDGRID_TIMESTAMP: timestamp}
    client = make_client(api, None)
    answer = client.post(path, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"recorded": 3, "duplicates": 0, "ignored": 1}
    assert client.post(path, content=body, headers=headers).json()["duplicates"] == 3
    assert client.post(path, content=body).status_code == 401  # unsigned
    assert client.post(path, content=body + b" ", headers=headers).status_code == 401
    with db.tenant(people.workspace_id) as s:
        rows = {r.email: r for r in s.scalars(select(BounceRecord))}
    assert (rows[ann].reason, rows[ann].hard, rows[ann].outbox_id) == (
        "userunknown",
        True,
        people.outbox[ann],
    )
    assert (rows[bob].reason, rows[bob].hard, rows[bob].outbox_id) == ("userunknown", True, None)
    assert rows[bob].contact_id == people.contacts[bob]  # found by address in the workspace
    assert (rows[cat].kind, rows[cat].outbox_id) == ("complaint", people.outbox[cat])
