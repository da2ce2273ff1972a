"""One detector per format, as a table of (written sample, expected reading).

The samples are written here, not copied from the corpus: each shows one habit of an MTA
the parser must read (docs/bounces.md), with what intake relies on beyond the reason: the
VERP Return-Path and Message-ID of the original, X-Postwise-* headers, filter wording.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from postwise.bounces.classifier import classify
from postwise.bounces.parser import parse_message
from postwise.bounces.report import Kind

VERP = "bounces+t0k3n@bounce.example.com"
ORIGINAL = (
    f"Return-Path: <{VERP}>\r\n"
    "Message-ID: <t0k3n.42@mail.example.com>\r\n"
    "X-Postwise-Campaign: spring\r\n"
    "From: Sales <sales@example.com>\r\n"
    "To: ann@corp.example\r\n"
    "Subject: Hello\r\n"
)


def _report(text: str, status_blocks: str, original: str = ORIGINAL) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        f"To: {VERP}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="BND"\r\n'
        "\r\n--BND\r\nContent-Type: text/plain\r\n\r\n"
        f"{text}\r\n"
        "--BND\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"{status_blocks}\r\n"
        "--BND\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"{original}"
        "--BND--\r\n"
    ).encode()


def _text(subject: str, body: str, sender: str = "MAILER-DAEMON@mx.example.net") -> bytes:
    return f"From: {sender}\r\nTo: {VERP}\r\nSubject: {subject}\r\n\r\n{body}".encode()


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    kind: Kind
    recipient: str | None
    reason: str | None
    hard: bool = False
    original: bool = False  # the VERP Return-Path and Message-ID must be read
    filter_wording: bool = False


CASES = [
    Case(
        "postfix dsn, remote sentence in the text part",
        _report(
            "<ann@corp.example>: host mx.corp.example[192.0.2.1] said: 550 5.1.1\r\n"
            "    <ann@corp.example>: Recipient address rejected: User unknown in\r\n"
            "    virtual mailbox table (in reply to RCPT TO command)\r\n",
            "Final-Recipient: rfc822; ann@corp.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            "Diagnostic-Code: smtp; 550 5.1.1 <ann@corp.example>: Recipient address\r\n"
            "    rejected: User unknown in virtual mailbox table\r\n",
        ),
        Kind.BOUNCE,
        "ann@corp.example",
        "userunknown",
        hard=True,
        original=True,
    ),
    Case(
        "a gateway's fake unknown user speaks of its filter",
        _report(
            "",
            "Final-Recipient: rfc822; bob@corp.example\r\nAction: failed\r\nStatus: 5.7.1\r\n"
            "Diagnostic-Code: smtp; 550 5.7.1 Message rejected by spam filter: sender "
            "reputation\r\n",
        ),
        Kind.BOUNCE,
        "bob@corp.example",
        "spamdetected",
        original=True,
        filter_wording=True,
    ),
    Case(
        "delay notice",
        _report(
            "",
            "Final-Recipient: rfc822; cid@corp.example\r\nAction: delayed\r\nStatus: 4.4.1\r\n"
            "Diagnostic-Code: X-Postfix; connect to mx.corp.example[192.0.2.1]:25: "
            "Connection refused\r\n",
        ),
        Kind.BOUNCE,
        "cid@corp.example",
        "networkerror",
    ),
    Case(
        "success dsn",
        _report(
            "",
            "Final-Recipient: rfc822; dee@corp.example\r\nAction: delivered\r\nStatus: 2.0.0\r\n",
        ),
        Kind.DELIVERED,
        "dee@corp.example",
        "delivered",
    ),
    Case(
        "qmail, quota",
        _text(
            "failure notice",
            "Hi. This is the qmail-send program at mx.example.net.\r\n"
            "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
            "This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
            "<eve@corp.example>:\r\n"
            "192.0.2.7 does not like recipient.\r\n"
            "Remote host said: 552 5.2.2 Mailbox quota exceeded\r\n"
            "Giving up on 192.0.2.7.\r\n\r\n"
            "--- Below this line is a copy of the message.\r\n\r\n" + ORIGINAL + "\r\nhi\r\n",
        ),
        Kind.BOUNCE,
        "eve@corp.example",
        "mailboxfull",
        original=True,
    ),
    Case(
        "exim, host refused at connection",
        _text(
            "Mail delivery failed: returning message to sender",
            "This message was created automatically by mail delivery software.\r\n\r\n"
            "A message that you sent could not be delivered to one or more of its\r\n"
            "recipients. This is a permanent error. The following address(es) failed:\r\n\r\n"
            "  fay@corp.example\r\n"
            "    host mx.corp.example [192.0.2.9]\r\n"
            "    SMTP error from remote mail server after initial connection:\r\n"
            "    554 5.7.1 Service unavailable; Client host [198.51.100.7] blocked using "
            "zen.spamhaus.org\r\n\r\n"
            "------ This is a copy of the message, including all the headers. ------\r\n\r\n"
            + ORIGINAL
            + "\r\nhi\r\n",
        ),
        Kind.BOUNCE,
        "fay@corp.example",
        "blocked",
        original=True,
        filter_wording=True,
    ),
    Case(
        "office 365 text, banned sending IP",
        _text(
            "Undeliverable: Hello",
            "Delivery has failed to these recipients or groups:\r\n\r\n"
            "gus@corp.example\r\n"
            "Your message wasn't delivered because the recipient's email provider rejected "
            "it.\r\n\r\n"
            "Remote Server returned '550 5.7.606 Access denied, banned sending IP "
            "[198.51.100.7]'\r\n",
            sender="postmaster@outlook.example",
        ),
        Kind.BOUNCE,
        "gus@corp.example",
        "blocked",
        filter_wording=True,
    ),
    Case(
        "arf with two complaining recipients",
        (
            "From: feedback@isp.example\r\nTo: abuse@example.com\r\nSubject: complaint\r\n"
            'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n'
            "\r\n--F\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n"
            "--F\r\nContent-Type: message/feedback-report\r\n\r\n"
            "Feedback-Type: abuse\r\nVersion: 1\r\nOriginal-Rcpt-To: hal@isp.example\r\n"
            "Original-Rcpt-To: ivy@isp.example\r\n"
            "--F\r\nContent-Type: message/rfc822\r\n\r\n" + ORIGINAL + "\r\nhi\r\n--F--\r\n"
        ).encode(),
        Kind.COMPLAINT,
        "hal@isp.example",
        "feedback",
        original=True,
    ),
    Case(
        "vacation auto-reply",
        (
            b"From: Jo <jo@corp.example>\r\nTo: sales@example.com\r\n"
            b"Subject: Out of office until Monday\r\nAuto-Submitted: auto-replied\r\n\r\n"
            b"I am away.\r\n"
        ),
        Kind.AUTOREPLY,
        "jo@corp.example",
        "vacation",
    ),
    Case(
        "a person writing about delivery is not a bounce",
        b"From: Lee <lee@corp.example>\r\nTo: sales@example.com\r\nSubject: Re: Hello\r\n\r\n"
        b"The parcel could not be delivered to mia@corp.example, it was returned to sender.\r\n",
        Kind.NOT_BOUNCE,
        None,
        None,
    ),
    Case(
        "sendmail with a bare MAILER-DAEMON sender",
        _text(
            "Returned mail: see transcript for details",
            "   ----- The following addresses had permanent fatal errors -----\r\n"
            "<ned@corp.example>\r\n"
            "    (reason: 550 5.1.1 <ned@corp.example>... User unknown)\r\n",
            sender="Mail Delivery Subsystem <MAILER-DAEMON>",
        ),
        Kind.BOUNCE,
        "ned@corp.example",
        "userunknown",
        hard=True,
    ),
    Case(
        "ordinary reply",
        (
            b"From: Kim <kim@corp.example>\r\nTo: sales@example.com\r\nSubject: Re: Hello\r\n\r\n"
            b"Thanks, let's talk next week.\r\n"
        ),
        Kind.NOT_BOUNCE,
        None,
        None,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_format_is_read(case: Case) -> None:
    parsed = parse_message(case.raw)
    assert parsed.kind is case.kind
    if case.reason is None:
        assert parsed.recipients == ()
        return
    first = parsed.recipients[0]
    assert (first.recipient, first.reason, first.hard) == (case.recipient, case.reason, case.hard)
    assert first.filter_wording is case.filter_wording
    if case.original:
        assert parsed.original_return_path == VERP
        assert parsed.original_message_id == "t0k3n.42@mail.example.com"
        assert parsed.original_headers == {"x-postwise-campaign": "spring"}


def test_complaint_lists_every_recipient_with_its_feedback_type() -> None:
    complaint = next(c for c in CASES if c.kind is Kind.COMPLAINT)
    parsed = parse_message(complaint.raw)
    assert [(r.recipient, r.feedback_type) for r in parsed.recipients] == [
        ("hal@isp.example", "abuse"),
        ("ivy@isp.example", "abuse"),
    ]


def test_dsn_codes_are_carried() -> None:
    parsed = parse_message(CASES[0].raw)
    first = parsed.recipients[0]
    assert (first.status, first.reply_code, first.action) == ("5.1.1", 550, "failed")
    assert parsed.reporting_mta == "mx.example.net"


@pytest.mark.parametrize(
    ("status", "reply", "diagnostic", "command", "reason", "hard"),
    [
        ("5.1.1", 550, "", None, "userunknown", True),  # the code alone
        ("5.0.0", 550, "User unknown", "DATA", "filtered", False),  # accepted at RCPT
        ("5.1.1", 550, "User unknown", "DATA", "userunknown", True),  # the code says so
        ("5.2.1", 550, "User unknown", None, "filtered", False),  # a mailbox-status code
        ("5.2.1", 550, "User unknown", "RCPT", "userunknown", True),  # ... said at RCPT
        ("5.0.0", 550, "Access denied", "MAIL", "rejected", False),  # the sender refused
        ("5.0.0", 554, "Rejected", "EHLO", "blocked", False),  # the host refused
        ("4.2.2", 452, "Mailbox full", None, "mailboxfull", False),
        ("5.7.1", 550, "SPF check failed for sender", None, "authfailure", False),
        ("4.0.0", None, "", None, "onhold", False),
        (None, None, "", None, "undefined", False),
        ("5.1.10", 550, "null MX", None, "notaccept", True),
        ("4.1.10", 450, "null MX", None, "notaccept", False),  # temporary: not hard
        (None, 550, "550 User unknown", None, "filtered", False),  # no stage, no code
        (None, 550, "550 User unknown", "RCPT", "userunknown", True),  # said at RCPT
        (None, 550, "550 5.1.1 User unknown", None, "userunknown", True),  # code in text
        (
            "5.0.0",
            None,
            "The email account that you tried to reach does not exist.",
            None,
            "filtered",
            False,
        ),
        ("5.7.1", 553, "Invalid recipient", "RCPT", "userunknown", True),
    ],
)
def test_classification_rules(
    status: str | None,
    reply: int | None,
    diagnostic: str,
    command: str | None,
    reason: str,
    hard: bool,
) -> None:
    verdict = classify(status=status, reply_code=reply, diagnostic=diagnostic, command=command)
    assert (verdict.reason, verdict.hard) == (reason, hard)


@pytest.mark.parametrize(
    ("diagnostic", "reason", "hard", "filter_wording"),
    [
        # Office 365 edge blocking: the address is not in the tenant, no filter involved
        (
            "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)",
            "userunknown",
            True,
            False,
        ),
        ("550 5.7.708 Access denied, traffic not accepted from this IP.", "blocked", False, True),
        (
            "550 5.1.1 <a@b.example>: Recipient address rejected: User unknown in virtual "
            "mailbox table",
            "userunknown",
            True,
            False,
        ),
        ("550 5.1.1 User unknown; rejected by our spam filter", "userunknown", True, True),
        (
            "552 5.2.2 The email account that you tried to reach is over quota.",
            "mailboxfull",
            False,
            False,
        ),
        (
            "550 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
            "blocked",
            False,
            True,
        ),
        ("554 5.7.1 Message rejected as spam by Content Filtering.", "spamdetected", False, True),
        (
            "550 5.7.26 Unauthenticated email from example.com is not accepted due to domain's "
            "DMARC policy",
            "authfailure",
            False,
            True,
        ),
        (
            "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected "
            "volume or user complaints",
            "badreputation",
            False,
            True,
        ),
        (
            "451 4.3.0 Requested action aborted: local error in processing",
            "systemerror",
            False,
            False,
        ),
        ("550 5.2.1 This mailbox has been blocked due to inactivity", "suspend", False, True),
        # Orange's number decides, not the "service refused" its texts all carry
        (
            "421 mwinf5c77 ME Service refuse. Veuillez essayer plus tard. Service refused, "
            "please try later. OFR_999 [999]",
            "blocked",
            False,
            False,
        ),
        (
            "552 5.1.1 Boite du destinataire pleine. Recipient overquota. OFR_417 [417]",
            "mailboxfull",
            False,
            False,
        ),
        ("451 Could not load DRD for domain (corp.example)", "systemerror", False, False),
    ],
)
def test_wording_in_the_wild(
    diagnostic: str, reason: str, hard: bool, filter_wording: bool
) -> None:
    verdict = classify(status=None, reply_code=None, diagnostic=diagnostic)
    assert (verdict.reason, verdict.hard, verdict.filter_wording) == (reason, hard, filter_wording)


@pytest.mark.parametrize(
    ("origins", "status", "diagnostic", "command", "reason", "hard"),
    [
        # Exchange 2003: the MSEXCH code decides; without one, the generic rule
        (
            ("exchange2003",),
            None,
            "MSEXCH:IMS:A:B:C 0 (000C05A6) Unknown Recipient",
            None,
            "userunknown",
            True,
        ),
        (
            ("exchange2003",),
            None,
            "MSEXCH:IMS:A:B:C 0 (000C0595) Ambiguous Recipient",
            None,
            "filtered",
            False,
        ),
        (("exchange2003",), None, "Recipient Not Found MSEXCH:IMC:A:B:C", None, "filtered", False),
        # Gmail's (state N) names the stage; a precise code still wins
        (("gmail",), None, "550 550 User unknown (state 14).", None, "userunknown", True),
        (("gmail",), "5.7.0", "554 554 5.7.0 Header error (state 18).", None, "filtered", False),
        (("gmail",), "5.2.2", "450 450 4.2.2 Mailbox Full (state 14).", None, "mailboxfull", False),
        (
            ("gmail",),
            "5.7.1",
            "550 550 5.7.1 <a@b.example>... Access denied (state 13).",
            None,
            "securityerror",
            False,
        ),
        (
            ("gmail",),
            "5.0.0",
            "Your message wasn't delivered to a@b.example because the address "
            "couldn't be found. Check for typos",
            None,
            "userunknown",
            True,
        ),
        (
            ("zoho",),
            None,
            "a@b.example Error, ERROR_CODE :421, ERROR_CODE :, Host not reachable.",
            None,
            "expired",
            False,
        ),
        (
            ("domino",),
            None,
            "User ann (ann@corp.example) not listed in Domino Directory",
            None,
            "userunknown",
            True,
        ),
        (
            ("domino",),
            None,
            "Cannot route mail to user (ann@corp.example)",
            None,
            "filtered",
            False,
        ),
        (
            ("notes",),
            None,
            "User not listed in public Name & Address Book",
            None,
            "userunknown",
            True,
        ),
        # au/KDDI: no address named = the recipient's filter
        (("kddi",), None, "550 : User unknown", None, "filtered", False),
        (("kddi",), "5.0.0", "550 <a@ezweb.ne.jp>: User unknown", None, "userunknown", True),
        # NTT DOCOMO: "Unknown user" after DATA is the user's reception settings
        (("nttdocomo",), "5.0.0", "550 Unknown user a@docomo.ne.jp", "DATA", "rejected", False),
        (("nttdocomo",), "5.0.0", "550 Unknown user a@docomo.ne.jp", "RCPT", "userunknown", True),
        (("messagelabs",), "5.0.0", "550 a@b.example... No such user", None, "userunknown", True),
        (
            ("yahooinc",),
            "5.0.0",
            "554 delivery error: dd This user doesn't have a yahoo.com account (a@yahoo.com) [0]",
            "DATA",
            "userunknown",
            True,
        ),
        (
            ("spectrum",),
            "5.1.0",
            "550 5.1.0 sender rejected. AUP#In-1310",
            None,
            "toomanyconn",
            False,
        ),
        (("mimecast",), "5.0.0", "554 Host network not allowed", None, "policyviolation", False),
        (
            ("interscanmss",),
            None,
            "Unable to deliver message to <a@b.example>",
            None,
            "userunknown",
            True,
        ),
        (
            ("verizon",),
            None,
            "550 - Requested action not taken: no such user here",
            None,
            "userunknown",
            True,
        ),
        # the same sentences from writers with no table of their own
        ((), None, "550 - Requested action not taken: no such user here", None, "filtered", False),
    ],
)
def test_writer_and_provider_wording(
    origins: tuple[str, ...],
    status: str | None,
    diagnostic: str,
    command: str | None,
    reason: str,
    hard: bool,
) -> None:
    reply = 550 if "550" in diagnostic else None
    verdict = classify(
        status=status, reply_code=reply, diagnostic=diagnostic, command=command, origins=origins
    )
    assert (verdict.reason, verdict.hard) == (reason, hard)


def _exchange2003(mailer: str) -> bytes:
    return (
        "From: postmaster@corp.example\r\n"
        f"To: {VERP}\r\n"
        "Subject: Undeliverable: Hello\r\n"
        f"X-Mailer: {mailer}\r\n"
        "\r\n"
        "Your message\r\n\r\n"
        "  To:      ann@corp.example\r\n"
        "  Subject: Hello\r\n\r\n"
        "did not reach the following recipient(s):\r\n\r\n"
        "ann@corp.example on Thu, 29 Apr 2010 16:51:51 -0500\r\n"
        "    The recipient name is not recognized\r\n"
        "    MSEXCH:IMS:CORP:SITE:EXCHANGE 0 (000C05A6) Unknown Recipient\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("mailer", "reason"),
    [
        ("Internet Mail Service (5.5.2653.19)", "userunknown"),  # Exchange: its code decides
        ("Some Other Mailer 1.0", "filtered"),  # no writer known: no stage, no x.1 code
    ],
)
def test_writer_is_recognized_by_its_headers(mailer: str, reason: str) -> None:
    parsed = parse_message(_exchange2003(mailer))
    assert parsed.kind is Kind.BOUNCE
    assert [(r.recipient, r.reason) for r in parsed.recipients] == [("ann@corp.example", reason)]


def test_provider_is_recognized_by_remote_host_or_recipient_domain() -> None:
    text = "550 Unknown user ann@docomo.ne.jp (in reply to end of DATA command)"
    blocks = (
        "Final-Recipient: rfc822; ann@docomo.ne.jp\r\nAction: failed\r\nStatus: 5.0.0\r\n"
        "Remote-MTA: dns; mfsmax.docomo.ne.jp\r\n"
        "Diagnostic-Code: smtp; 550 Unknown user ann@docomo.ne.jp\r\n"
    )
    assert parse_message(_report(text, blocks)).recipients[0].reason == "rejected"
    kddi = blocks.replace("docomo.ne.jp", "ezweb.ne.jp").replace("mfsmax.", "mx.")
    kddi = kddi.replace("550 Unknown user ann@ezweb.ne.jp", "550 <ann@ezweb.ne.jp>: User unknown")
    assert parse_message(_report("", kddi)).recipients[0].reason == "userunknown"


@pytest.mark.parametrize(
    ("stage_sentence", "reason"),
    [
        ("192.0.2.1 does not like recipient.", "userunknown"),  # qmail: said at RCPT
        ("192.0.2.1 failed on DATA command.", "filtered"),  # after DATA: a filter
        ("", "filtered"),  # no stage named, no x.1 code
    ],
)
def test_qmail_stage_sentences_name_the_command(stage_sentence: str, reason: str) -> None:
    body = (
        "Hi. This is the qmail-send program at mx.example.net.\r\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
        "<ann@corp.example>:\r\n"
        f"{stage_sentence}\r\n"
        "Remote host said: 550 User unknown\r\n"
        "Giving up on 192.0.2.1.\r\n\r\n"
        "--- Below this line is a copy of the message.\r\n\r\n"
        f"{ORIGINAL}\r\nHello\r\n"
    )
    parsed = parse_message(_text("failure notice", body))
    assert [(r.recipient, r.reason) for r in parsed.recipients] == [("ann@corp.example", reason)]
