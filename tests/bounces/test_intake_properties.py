"""Properties of tying and intake over generated input (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from postwise.bounces import intake, policy, tying
from postwise.bounces.report import Kind, ParsedMessage, RecipientOutcome
from postwise.storage.database import Database
from postwise.storage.tables import BounceRecord, InboundMessage
from postwise.tracking.tokens import TokenKind
from tests.bounces.scenario import BOUNCE_DOMAIN, SIGNER, audience, context, verp

HEX = "0123456789abcdef"


@given(st.integers(min_value=1, max_value=2**62), st.data())
def test_a_verp_address_names_its_row_and_no_altered_token_names_any(
    outbox_id: int, data: st.DataObject
) -> None:
    address = verp(outbox_id)
    assert tying.outbox_id_of_address(SIGNER, address) == outbox_id
    assert tying.outbox_id_of_address(SIGNER, address.upper()) == outbox_id  # folded case
    token = SIGNER.sign(TokenKind.BOUNCE, outbox_id)
    at = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    other = data.draw(st.sampled_from([c for c in HEX if c != token[at]]))
    forged = token[:at] + other + token[at + 1 :]
    assert tying.outbox_id_of_address(SIGNER, f"bounces+{forged}@{BOUNCE_DOMAIN}") is None
    assert tying.outbox_id_of_message_id(SIGNER, f"<{forged}.{outbox_id}@x.example>") is None
    # A token of another kind (a click link's) never ties a bounce.
    click = SIGNER.sign(TokenKind.CLICK, outbox_id, 0)
    assert tying.outbox_id_of_address(SIGNER, f"bounces+{click}@{BOUNCE_DOMAIN}") is None


_TEXT = st.text(max_size=60)
_OUTCOMES = st.builds(
    RecipientOutcome,
    recipient=st.one_of(st.none(), st.emails(), _TEXT),
    reason=st.sampled_from(["userunknown", "mailboxfull", "blocked", "filtered", "", "x" * 80]),
    hard=st.booleans(),
    status=st.one_of(st.none(), st.from_regex(r"[245]\.[0-9]\.[0-9]{1,3}", fullmatch=True), _TEXT),
    reply_code=st.one_of(st.none(), st.integers(min_value=-10, max_value=10**6)),
    action=st.sampled_from([None, "failed", "delayed", "delivered", "weird"]),
    diagnostic=st.one_of(st.none(), st.text(max_size=300)),
    feedback_type=st.one_of(st.none(), _TEXT),
    filter_wording=st.booleans(),
)
_PARSED = st.builds(
    ParsedMessage,
    kind=st.sampled_from(list(Kind)),
    recipients=st.lists(_OUTCOMES, max_size=4).map(tuple),
    subject=st.one_of(st.none(), st.text(max_size=2000)),
    unparsed_reason=st.one_of(st.none(), st.text(max_size=1000)),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(parsed=_PARSED, tie=st.booleans(), raw=st.binary(max_size=3000))
def test_whatever_the_parser_says_intake_keeps_it_and_never_raises(
    db: Database, parsed: ParsedMessage, tie: bool, raw: bytes
) -> None:
    people = _people(db)
    ctx = context(db)
    before = _counts(db)
    rcpt = (verp(people.outbox["any@corp.example"]),) if tie else ()
    result = intake.record_parsed(
        ctx,
        parsed,
        raw=raw,
        source="smtp",
        envelope=intake.Envelope("\x00<>", rcpt),
    )
    assert result.inbound_id is not None and not result.duplicate
    assert all(v in policy.VERDICTS for v in result.verdicts)
    inbound, records = _counts(db)
    assert inbound == before[0] + 1
    assert records == before[1] + len(result.record_ids)
    if parsed.kind not in (Kind.BOUNCE, Kind.COMPLAINT) or (
        not tie and not any("@" in (o.recipient or "") for o in parsed.recipients)
    ):
        assert result.record_ids == []


_CACHE: dict[str, object] = {}


def _people(db: Database) -> object:
    """One audience per database (hypothesis reuses the function's fixture)."""
    key = db.url
    if key not in _CACHE:
        _CACHE[key] = audience(db, ["any@corp.example"])
    return _CACHE[key]


def _counts(db: Database) -> tuple[int, int]:
    with db.system() as s:
        return (
            int(s.scalar(select(func.count()).select_from(InboundMessage)) or 0),
            int(s.scalar(select(func.count()).select_from(BounceRecord)) or 0),
        )
