"""A real MTA's bounce, end to end: mail sent with our VERP return path through a private
Postfix, which cannot deliver it and writes its own RFC 3464 report back to the VERP
address, routed to the inbound listener; the record must be tied, classified, acted on.

Postfix is Debian's (``.ci/run`` installs it); without it the test skips (fails in CI).
"""

from __future__ import annotations

import os
import pwd
import shutil
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from postwise.bounces.inbound import InboundServer
from postwise.storage.database import Database
from postwise.storage.tables import BounceRecord, InboundMessage, Suppression
from tests.bounces.scenario import BOUNCE_DOMAIN, audience, context, message_id, verp
from tests.delivery.postfix_peer import POSTFIX, _master_cf, free_port, require, wait_for_port

GONE = "left.long.ago@gone.example"


@pytest.fixture
def bouncing_postfix(db: Database) -> Iterator[tuple[int, InboundServer]]:
    """Postfix on loopback that fails every gone.example recipient after accepting it and
    sends bounces for the VERP domain to a running inbound listener."""
    require(POSTFIX)
    if os.geteuid() != 0:
        pytest.skip("a private Postfix instance needs root to own its queue")
    listener = InboundServer(context(db), BOUNCE_DOMAIN, port=0)
    listener.start()
    root = Path(tempfile.mkdtemp(prefix="postwise-postfix-bounce-"))
    root.chmod(0o755)
    etc, queue, data = (root / n for n in ("etc", "queue", "data"))
    for folder in (etc, queue, data):
        folder.mkdir()
    postfix_user = pwd.getpwnam("postfix")
    os.chown(data, postfix_user.pw_uid, postfix_user.pw_gid)
    port = free_port()
    (etc / "transport").write_text(
        "gone.example error:5.1.1 <left.long.ago@gone.example>: Recipient address rejected: "
        "User unknown in virtual mailbox table\n"
        f"{BOUNCE_DOMAIN} smtp:[127.0.0.1]:{listener.port}\n"
    )
    (etc / "main.cf").write_text(
        f"""compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.gone-test.localdomain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file = /dev/stdout
smtpd_recipient_restrictions = permit_mynetworks, reject
smtpd_reject_unlisted_recipient = no
transport_maps = texthash:{etc}/transport
smtp_tls_security_level = none
smtp_dns_support_level = disabled
alias_maps =
alias_database =
smtpd_banner = $myhostname ESMTP
"""
    )
    (etc / "master.cf").write_text(_master_cf(port))
    log = open(root / "maillog", "wb")  # noqa: SIM115 (closed after the instance stops)
    process = subprocess.Popen(
        [str(POSTFIX), "-c", str(etc), "start-fg"], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for_port(port)
        yield port, listener
    finally:
        subprocess.run([str(POSTFIX), "-c", str(etc), "stop"], capture_output=True)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        listener.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_postfix_bounce_reaches_the_listener_tied_and_classified(
    db: Database, bouncing_postfix: tuple[int, InboundServer]
) -> None:
    port, _ = bouncing_postfix
    people = audience(db, [GONE])
    outbox_id = people.outbox[GONE]
    msg = EmailMessage()
    msg["From"] = "news@sender.example"
    msg["To"] = GONE
    msg["Subject"] = "Launch"
    msg["Message-ID"] = message_id(outbox_id)
    msg.set_content("Hello")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(msg, from_addr=verp(outbox_id), to_addrs=[GONE])

    deadline = time.monotonic() + 60
    record = None
    while record is None and time.monotonic() < deadline:
        with db.tenant(people.workspace_id) as s:
            record = s.scalars(select(BounceRecord)).first()
        time.sleep(0.2)
    assert record is not None, "Postfix's bounce never reached the listener"
    assert (record.email, record.outbox_id, record.source) == (GONE, outbox_id, "smtp")
    assert (record.reason, record.hard, record.status) == ("userunknown", True, "5.1.1")
    assert record.evidence["tied_by"] == "verp" and record.verdict == "suppressed"
    with db.tenant(people.workspace_id) as s:
        assert [r.value for r in s.scalars(select(Suppression))] == [GONE]
    with db.system() as s:
        inbound = s.scalars(select(InboundMessage)).one()
    assert b"mx.gone-test.localdomain" in inbound.raw  # Postfix wrote it, not the test
    assert inbound.rcpt_to == [verp(outbox_id)]
