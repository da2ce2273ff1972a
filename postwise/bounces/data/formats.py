# ruff: noqa: E501  (a table of patterns: one pattern per line reads better than wrapped)
"""How bounce messages are laid out in the wild: one line per MTA habit.

The parser (``bounces/parser.py``) reads these tables; adding a gateway's wording is a
line here. Patterns are matched against single stripped lines unless said otherwise.
"""

from __future__ import annotations

import re

# Lengths are bounded (RFC 5321: 64 for the local part, 63 a label) so a long run of
# address-like characters (a base64 blob, a line of dashes) cannot make a search quadratic.
ADDRESS = r"(?:\"[^\"\s@]{1,64}\"|[\w.!#$%&'*+/=?^`{|}~-]{1,64})@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}"
_A = rf"[<\"]?(?P<addr>{ADDRESS})[>\"]?"
_I = re.IGNORECASE

# Where the MTA's own words end and the returned original begins (searched in the body).
ORIGINAL_BOUNDARY = re.compile(
    r"^[ \t>|]*(?:"
    + "|".join(
        [
            r"-+\s*(?:the\s+)?original message\b.*",  # Gmail, Google Groups, many
            r"-+\s*this is a copy of (?:the|your) message.*",  # Exim
            r"-+\s*below this line is a copy of the message.*",  # qmail
            r"-+\s*(?:original|returned) (?:message|mail|headers?) (?:follows?|below).*",
            r"-+\s*(?:unsent|undelivered|returned|rejected) (?:message|mail) (?:follows?|below).*",
            r"-+\s*(?:the\s+)?(?:header|headers) of (?:the )?(?:original|your) message.*",
            r"message headers follow\.?",  # DragonFly
            r"original message headers:?",
            r"-+\s*original message header.*",
            r"\*+\s*original message\s*\*+.*",
            r"-+\s*mail (?:header|contents) of the original message.*",
            r"original message follows\.?",
            r"-+\s*start of returned message\s*-+",
            r"--- original message follows\.?",
            r"-+\s*message text follows.*",
            r"-+\s*forwarded message.*",
            r"-+\s*(?:original|failed) message.*-+",
            r"below (?:this line )?is (?:a copy of )?the original message.*",
            r"the (?:original|first \d+ lines of the original) message (?:is|are) (?:attached|included|below).*",
        ]
    )
    + r")\s*$",
    re.IGNORECASE | re.MULTILINE,
)

# A line naming a failed recipient; the first match wins. ``addr`` is the address, the
# rest of the line (before and after) becomes the start of its diagnostic.
RECIPIENT_LINES = [
    re.compile(p, _I)
    for p in (
        rf"^<(?P<addr>{ADDRESS})>:?",  # qmail, Postfix text, DragonFly "<a>:"
        rf"^(?:final|original)-recipient:\s*(?:rfc822;)?\s*{_A}",  # DSN fields inline
        rf"^(?:\d{{3}}[ -](?:\d\.\d{{1,3}}\.\d{{1,3}}\s+)?)?<(?P<addr>{ADDRESS})>\.\.\.",  # Sendmail
        rf"^(?:RCPT TO:\s*)?{_A}\s*$",  # Exim, many: the address alone on its line
        rf"^{_A}\s*[:;(\[]\s*",  # "a@b: text", "a@b (reason)"
        rf"^{_A}\s*\.\.\.",  # "a@b ... unknown host"
        rf"^(?:recipient|address|addressee|rcpt to|user|e-?mail)s?\s*(?:address)?\s*:\s*{_A}",
        rf"\bSMTP=(?P<addr>{ADDRESS})",  # Exchange X.400 form: dda:SMTP=a@b;
        rf"\baddressed to\s+['\"<]?(?P<addr>{ADDRESS})",
        rf"\b(?:delivering|deliver|delivery|send|sent|sending|relay|forward)(?:ed|ing)?\s+(?:your\s+|the\s+|this\s+)?(?:e-?mail|mail|message)?\s*(?:to|for)\s+{_A}",
        rf"\b(?:message|mail|e-?mail) (?:to|for) {_A}\s+(?:could not|couldn't|was not|wasn't|has not|cannot|can't|failed|is undeliverable|bounced)",
        rf"\b(?:following|these)\s+(?:recipients?|addresses?|destinations?)[^:]*:\s*{_A}",
        rf"\b(?:recipient|address|mailbox|user|account)\s+{_A}\s",
        rf"\bto\s+<(?P<addr>{ADDRESS})>",
        rf"^[\s*-]*{_A}\s*$",
        rf"^\s*{_A}\s+(?:on|at)\s",
        rf"^\s*(?:failed|undeliverable|unknown|rejected)[^:]{{0,40}}:\s*{_A}",
        rf"\bRCPT TO:?\s*<(?P<addr>{ADDRESS})>",
    )
]

# Addresses that are never the failed recipient.
NOT_RECIPIENT = re.compile(
    r"^(?:mailer-daemon|postmaster|abuse|noreply|no-reply|bounces?|mail-daemon)@"
    r"|@(?:[\w-]+\.)*(?:google\.com/|support\.)",
    _I,
)

# A line after which the diagnostic of the current recipient stops.
STOP_LINE = re.compile(
    r"^(?:reporting-mta|arrival-date|received-from-mta|x-postfix|--\S|content-type:|"
    r"\d{3} [\w.-]+ \(\w+\)\.\.\.|(?:\.\.\. )?while talking to|"
    r"if you do so|for further assistance|please (?:contact|direct)|for more information)",
    _I,
)

# A line ending so continues on the next one, even if that line starts with an address.
CONTINUED = re.compile(r"\(expanded from:?\s*$", _I)

# The SMTP command the remote server was answering, named in the diagnostic.
SMTP_COMMAND = re.compile(
    r"(?:in reply to|after|while (?:sending|talking)[^:]*?|did not like our|response to|\[(?=\w+_)|"
    r">>>|command:?|failed after(?: I sent)?(?: the)?|most progress was|\bSMTP:(?=RCPT|MAIL|DATA))\s*(?:end of\s+|final\s+|the\s+)?"
    r"(?P<cmd>RCPT[ _]TO|RCPT|MAIL[ _]FROM|MAIL|DATA|end of data|EHLO|HELO|STARTTLS|AUTH|"
    r"CONNECT|initial connection|message body)\b",
    _I,
)

# The same, for lower-cased ASCII text: without IGNORECASE the engine can skip ahead to
# the characters a lead-in starts with (about twice as fast). No escape is upper case.
SMTP_COMMAND_LOWER = re.compile(SMTP_COMMAND.pattern.lower().replace("(?p<", "(?P<"))

# qmail-remote's fixed sentences (and its clones'), each written at one SMTP stage:
# searched (lower-cased) before SMTP_COMMAND.
STAGE_SENTENCES = [
    (" but greeting failed", "CONNECT"),
    (" but my name was rejected", "EHLO"),
    (" but sender was rejected", "MAIL"),
    (" does not like recipient", "RCPT"),
    (" failed on data command", "DATA"),
    (" failed after i sent the message", "DATA"),
]

# Words one of which SMTP_COMMAND needs: a cheap test before the regex runs.
SMTP_COMMAND_CUES = (
    "reply to",
    "after",
    "while",
    "like our",
    "response to",
    ">>>",
    "command",
    "[",
    "most progress was",  # qmail: "most progress was RCPT TO response"
    "smtp:",  # "Technical details: SMTP:RCPT host ..."
)

# Who sends bounces (local part of From).
# Who sends bounces: searched in the whole From field (display name included), since
# many write a bare "MAILER-DAEMON" with no domain.
BOUNCE_SENDER = re.compile(
    r"(?<![\w.-])(?:mailer-daemon|mail-daemon|postmaster|post_master|mailerdaemon|mdaemon|"
    r"mail\.delivery\.system|mail-?delivery|bounces?)(?![\w-])|mail delivery (?:sub)?system|"
    r"delivery status notification",
    _I,
)

BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (?:status )?notification|delivery (?:has )?failed|"
    r"delivery failure|failure notice|returned mail|mail delivery|delivery problem|"
    r"could not be delivered|non[- ]?delivery|nondeliverable|delivery report|"
    r"bounced|rejected|warning: could not send|message not delivered|"
    r"not delivered|delivery status|mail system error|unable to deliver|"
    r"delayed mail|delivery delayed|mail failure|error sending|dsn|"
    r"配信|エラー|不達|返送|送信できません",
    _I,
)

BOUNCE_BODY = re.compile(
    r"could not be delivered|couldn't be delivered|wasn't delivered|was not delivered|"
    r"delivery (?:to the following|has failed|failed)|undeliverable|"
    r"permanent (?:error|fatal|failure)|i(?:'m| am) afraid i wasn't able to deliver|"
    r"this is the mail system at|mail delivery failed|message delivery failed|"
    r"unable to deliver|returned to sender|delivery status notification|"
    r"following addresses? had (?:permanent )?(?:fatal )?errors|"
    r"there was an error delivering",
    _I,
)

# Sentences only software writes: enough on their own, without a returned original.
BOUNCE_BODY_ALONE = re.compile(
    r"i(?:'m| am) afraid i wasn't able to deliver|this is the mail system at host|"
    r"this message was created automatically by mail delivery software|"
    r"this is an automatically generated delivery status notification|"
    r"not a member of this (?:mailing )?list",
    _I,
)

# Auto-replies (RFC 3834 and the common non-standard marks); header -> value pattern.
AUTOREPLY_HEADERS = [
    ("Auto-Submitted", re.compile(r"^\s*auto-(?:replied|generated|notified)", _I)),
    ("X-Autoreply", re.compile(r"\S")),
    ("X-Autorespond", re.compile(r"\S")),
    ("X-Auto-Response-Suppress", re.compile(r"\boof\b|\ball\b", _I)),
    ("Precedence", re.compile(r"auto_reply|auto-reply", _I)),
    ("X-Mail-Autoreply", re.compile(r"\S")),
    ("X-Vacation", re.compile(r"\S")),
]
AUTOREPLY_SUBJECT = re.compile(
    r"\b(?:auto(?:matic)?[ -]?(?:reply|response|antwort)|out of (?:the )?office|vacation|"
    r"away (?:until|from)|on leave|abwesenheit\w*|absence|r[ée]ponse automatique|"
    r"respuesta autom[aá]tica|fuera de la oficina|risposta automatica|automatisch antwoord|"
    r"afwezig|ooo)\b|自動(?:応答|返信)|不在",
    _I,
)

# Feedback-loop reports sent without a message/feedback-report part (Hotmail JMRP, ...):
# the header names the complained-about recipient.
FEEDBACK_HEADERS = ("X-HmXmrOriginalRecipient",)

# Unsubscribe requests sent by mail clients as a message of their own: header, value
# pattern, feedback type. The complaining address is the message's From.
OPT_OUT_HEADERS = [
    ("X-Apple-Unsubscribe", re.compile(r"^\s*true", _I), "opt-out"),
]

# Formats whose cause is fixed by who sends them, whatever the language of the text:
# pattern over the bounce's own words -> reason.
FORMAT_REASONS = [
    (
        re.compile(r"groups\.google\.com/(?:support|d/)", _I),
        "rejected",
    ),  # Google Groups: cannot post
]
