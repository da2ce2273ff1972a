# ruff: noqa: E501  (a table of patterns: one pattern per line reads better than wrapped)
"""Who wrote a bounce, and what that writer's own words mean.

Some MTAs and providers use fixed wording or codes whose meaning is theirs, not the
generic phrase tables': Exchange 2003 puts an ``MSEXCH`` error code in brackets, Gmail's
old notices end the remote reply with ``(state N)`` naming the SMTP stage, InterScan
says "Unable to deliver" only for unknown recipients, and au/KDDI answers a filtered
message with "550 : User unknown" but an unknown one with "550 <address>: User unknown".

``SENDERS``: the MTA that wrote the bounce, recognized by its header fields (read once
per message). ``REMOTES``: the receiving provider, recognized by a host-name suffix in
the remote MTA, the reporting MTA or the diagnostic, or by the recipient's domain.
``WORDING``: for each name, ``(pattern, reason, command)`` lines searched in order over
the diagnostic (case-insensitive); a match decides the reason (``None``: the line only
says which SMTP command the remote answered). Everything here is a layout or wording
those writers use for every message, never a sample's address or host.
"""

from __future__ import annotations

# (name, header field, how, words): the field's value (lower-cased, leading blanks
# dropped) starts with (``prefix``) or contains (``in``) the words; ``any`` needs only
# the field. Plain string tests: this runs on every header of every message.
SENDERS: list[tuple[str, str, str, str]] = [
    # Microsoft Exchange 2000/2003 (and its Internet Mail Connector / IMS predecessors)
    ("exchange2003", "x-mailer", "prefix", "internet mail service ("),
    ("exchange2003", "x-mailer", "prefix", "microsoft exchange server internet mail connector"),
    ("exchange2003", "x-mimeole", "prefix", "produced by microsoft exchange"),
    ("exchange2003", "x-ms-embedded-report", "any", ""),
    ("exchange2003", "received", "in", " with internet mail service ("),
    # Ipswitch/Progress IMail Server
    ("imailserver", "x-mailer", "prefix", "<smtp32 v"),
    ("imailserver", "subject", "prefix", "undeliverable mail "),
    # Verizon Wireless (vtext / vzwpix gateways)
    ("verizon", "from", "in", "post_master@vtext.com"),
    ("verizon", "from", "in", ".vzwpix.com"),
    # Trend Micro InterScan Messaging Security Suite
    ("interscanmss", "from", "prefix", '"interscan'),
    ("interscanmss", "content-type", "in", "interscan"),
    # HCL (Lotus) Domino and Notes
    ("domino", "subject", "prefix", "delivery failure:"),
    ("domino", "subject", "in", "delivery_failure"),
    ("notes", "subject", "prefix", "undeliverable message"),
    # Zoho Mail
    ("zoho", "x-zohomail", "any", ""),
    # Gmail's own notices (the older, text-only layout)
    ("gmail", "from", "in", "<mailer-daemon@googlemail.com>"),
]

# Fields each SENDERS line needs beside its own (the words, in the field): Gmail's From
# is shared by Google's newer DSNs, whose layout is read like any other report.
SENDER_ALSO: dict[str, tuple[str, str]] = {
    "gmail": ("subject", "delivery status notification"),
}

# Words in the bounce body (exact, case-sensitive) that name the writer when its headers
# do not.
SENDER_BODY: list[tuple[str, str]] = [
    ("interscanmss", " InterScan "),
]

# (name, host-name suffixes, recipient domains): a remote provider, named by a suffix of
# the remote or reporting MTA or of a host name in the diagnostic, or by the recipient's
# domain being one of the provider's own.
REMOTES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("kddi", (".ezweb.ne.jp", "msmx.au.com"), ("ezweb.ne.jp", "au.com")),
    ("messagelabs", (".messagelabs.com",), ()),
    ("nttdocomo", ("mfsmax.docomo.ne.jp",), ("docomo.ne.jp",)),
    ("yahooinc", (".yahoodns.net",), ()),
    ("mimecast", (".mimecast.com",), ()),
    ("spectrum", ("charter.net", "spectrum.net"), ("charter.net", "spectrum.net")),
]

# Per-writer wording: (pattern, reason or None, SMTP command or None). For Gmail, an
# enhanced status code with a non-zero detail still beats the state's reason.
WORDING: dict[str, list[tuple[str, str | None, str | None]]] = {
    "exchange2003": [
        (r"MSEXCH:.*\(000C05A6\)", "userunknown", None),  # Unknown Recipient
        (r"MSEXCH:.*\(000C0595\)", "filtered", None),  # Ambiguous Recipient
        (
            r"MSEXCH:.*\((?:00010256|000D06B5)\)",
            "systemerror",
            None,
        ),  # too many recipients, no proxy
        (r"MSEXCH:.*\(00120270\)", "networkerror", None),  # Too Many Hops
        (r"MSEXCH:.*\((?:00050311|000502CC)\)", "contenterror", None),  # conversion failed
        (r"MSEXCH:.*\(000B0981\)", "securityerror", None),  # server does not support AUTH
    ],
    "imailserver": [
        (r"\bunknown host\b", "hostunknown", None),
        (r"\bunknown user\b|invalid final delivery userid", "userunknown", None),
        (r"user mailbox exceeds allowed size", "mailboxfull", None),
        (r"requested action not taken: virus detected", "virusdetected", None),
        (r"blacklisted url in message", "spamdetected", None),
        (r"\bdelivery failed ", "expired", None),
    ],
    "domino": [
        (r"cannot route mail to user", "filtered", None),
        (r"several matches found in domino directory", "systemerror", None),
        (
            r"not listed in (?:domino directory|public name & address book)|no se encuentra en el directorio de domino|non r.pertori. dans l'annuaire domino|domino ディレクトリには見つかりません",
            "userunknown",
            None,
        ),
    ],
    "notes": [
        (r"message has exceeded maximum hop count", "networkerror", None),
        (r"user not listed in public name & address book", "userunknown", None),
    ],
    "zoho": [
        (r"\bhost not reachable\b", "expired", None),  # it gave up on an unreachable host
    ],
    "verizon": [
        (
            r"550 - requested action not taken: no such user here|no valid recipients",
            "userunknown",
            None,
        ),
    ],
    "interscanmss": [
        # "Unable to deliver message to <a@b>": its notice for an unknown recipient
        (r"\bunable to (?:deliver\b|\()", "userunknown", None),
    ],
    "gmail": [
        (r"\(state 6\)", "failedstarttls", "MAIL"),
        (r"\(state 8\)", "systemerror", "AUTH"),
        (r"\(state 9\)", "failedstarttls", "AUTH"),
        (r"\(state 12\)", "norelaying", "AUTH"),
        (r"\(state 13\)", "blocked", "EHLO"),
        (r"\(state 14\)", "userunknown", "RCPT"),
        (r"\(state 1[578]\)", "filtered", "DATA"),
        # the newer layout: "** Address not found ** ... because the address couldn't be found"
        (r"because the address couldn't be found", "userunknown", None),
    ],
    # au/KDDI: a filter answers "550 : User unknown"; an unknown address is named.
    "kddi": [
        (r"\b550:? : user unknown", "filtered", None),
        (r">: user unknown", "userunknown", None),
    ],
    # Symantec/Broadcom Email Security.cloud
    "messagelabs": [
        (r"domain authentication fail", "authfailure", None),
        (r"connection rejected by policy", "badreputation", None),
        (r"your ip is in the pbl|your ip address (?:\(\S+\) )?has been", "blocked", None),
        (r"stray linefeeds in message", "contenterror", None),
        (r"tls/sslv3 connection required", "failedstarttls", None),
        (r" as a relay, ", "norelaying", None),
        (r"has detected that this message is not rfc 5322", "notcompliantrfc", None),
        (
            r"sender envelope domain not allowed for sender ip address|your (?:domain|email address) has been (?:blocked|blacklisted)|your envelope sender is in my badmailfrom list",
            "rejected",
            None,
        ),
        (r"please turn on smtp authentication", "securityerror", None),
        (r"message filtered|filtered by outbound scanning", "spamdetected", None),
        (r"too many recipients received this hour|too many messages", "toomanyconn", None),
        (r"no such user|invalid recipient|mailbox is not allowed", "userunknown", None),
    ],
    # NTT DOCOMO refuses with "550 Unknown user" both an unknown address (at RCPT) and
    # mail its user's reception settings refuse (after DATA, the sender's domain).
    "nttdocomo": [
        (r"552 too much mail data", "mailboxfull", None),
        (
            r"503 bad sequence of commands|504 command parameter not implemented",
            "syntaxerror",
            None,
        ),
        (r"552 too many recipients", "toomanyconn", None),
    ],
    "yahooinc": [
        (
            r"yahoo requires all senders to authenticate with either spf or dkim",
            "authfailure",
            None,
        ),
        (
            r" because the ip is in spamhaus's list;|not accepted from ip addresses on spamhaus xbl",
            "blocked",
            None,
        ),
        (r"relaying denied for ", "norelaying", None),
        (r"headers are not rfc compliant", "notcompliantrfc", None),
        (r"not accepted for policy reasons", "policyviolation", None),
        (
            r"temporarily deferred due to unexpected volume or user complaints|due to unresolvable rfc\.5321 (?:from )?domain| will be permanently deferred",
            "rejected",
            None,
        ),
        (r"user is receiving mail too quickly", "speeding", None),
        (r" is no longer valid\.|this mailbox is disabled", "suspend", None),
        (r"syntax error in parameters or arguments", "syntaxerror", None),
        (r"max message per connection reached", "toomanyconn", None),
        (r"dd this user doesn't have an? |mailbox not found", "userunknown", None),
    ],
    "mimecast": [
        (r"(?:spf|dkim|dmarc) sender invalid - envelope rejected", "authfailure", None),
        (
            r"internal resources are temporarily unavailable|local ct ip reputation",
            "badreputation",
            None,
        ),
        (
            r"sender address blocked|recipient temporarily unavailable|ip temporarily blacklisted",
            "blocked",
            None,
        ),
        (
            r"this route requires (?:encryption|tls version|high-strength ciphers)|configuration is invalid for this certificate",
            "failedstarttls",
            None,
        ),
        (r"maximum email size exceeded", "mesgtoobig", None),
        (r"the incorrect hostname used for inbounds|mail loop detected", "networkerror", None),
        (r"open relay (?:is )?not allowed", "norelaying", None),
        (r"account inbounds disabled", "notaccept", None),
        (
            r"anti-spoofing policy|content examination policy|host network,? not allowed",
            "policyviolation",
            None,
        ),
        (
            r"administrative prohibition envelope blocked|envelope blocked - user (?:domain )?entry|blocked senders|block policy for envelope from",
            "rejected",
            None,
        ),
        (
            r"incorrect authentication data|submitter failed to (?:authenticate|disabled)",
            "securityerror",
            None,
        ),
        (
            r"unable to process (?:connection|command|an email)|message ended early",
            "systemerror",
            None,
        ),
        (
            r"account service is temporarily unavailable|too many recipients|exceeding outbound thread limit",
            "toomanyconn",
            None,
        ),
        (r"\b501 invalid address|\b503 user unknown|\b550 invalid recipient", "userunknown", None),
        (
            r"\b554 email rejected due to security policies",
            "virusdetected",
            None,
        ),  # virus or spam signature
    ],
}

# Writers whose table yields to an enhanced status code with a non-zero detail.
CODE_FIRST = frozenset({"gmail"})

# What such a code means there beside the generic ``phrases.STATUS`` (which leaves out
# x.7.1, used for everything when a sentence is present): "delivery not authorized".
CODE_FIRST_NAMES = {"x.7.1": "securityerror"}

# Spectrum/Charter's published AUP#...NNNN codes: (first, last, reason).
SPECTRUM_CODES: list[tuple[int, int, str]] = [
    (1000, 1000, "blocked"),
    (1010, 1010, "rejected"),
    (1020, 1080, "rejected"),
    (1090, 1090, "systemerror"),
    (1100, 1150, "requireptr"),
    (1160, 1190, "policyviolation"),
    (1200, 1250, "blocked"),
    (1260, 1260, "networkerror"),
    (1300, 1340, "toomanyconn"),
    (1350, 1490, "speeding"),
    (1500, 1520, "rejected"),
    (1530, 1530, "mesgtoobig"),
    (1540, 1550, "speeding"),
    (1560, 1560, "policyviolation"),
    (1580, 1580, "speeding"),
]

# Orange / La Poste (France) end their replies with a numbered reason: OFR_999,
# LPN007_416, OFR004_405 [405]. The number decides, whatever the words around it (they
# all say "service refused").
ORANGE_CODES: dict[str, str] = {
    "101": "blocked",
    "102": "blocked",
    "103": "blocked",
    "104": "toomanyconn",
    "305": "securityerror",
    "401": "authfailure",
    "402": "securityerror",
    "403": "rejected",
    "405": "rejected",
    "415": "rejected",
    "416": "userunknown",
    "417": "mailboxfull",
    "420": "suspend",
    "421": "rejected",
    "426": "suspend",
    "505": "systemerror",
    "506": "spamdetected",
    "510": "blocked",
    "514": "mesgtoobig",
    "517": "authfailure",
    "630": "policyviolation",
    "999": "blocked",
}
