"""A private Postfix instance on loopback: its own config folder, queue and port.

Recipients get the answers listed in ``ANSWERS`` (``check_recipient_access``); everyone
else is accepted and delivered into one maildir (``virtual`` transport), so a test can
read back exactly what Postfix received. The binary is Debian's (``.ci/run`` installs
it); without it the tests skip, except under CI where they fail.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

POSTFIX = Path("/usr/sbin/postfix")
SMTP_SINK = Path("/usr/sbin/smtp-sink")
SMTP_SOURCE = Path("/usr/sbin/smtp-source")
ANSWERS = {
    "unknown@corp.example": "550 5.1.1 User unknown",
    "slow@corp.example": "451 4.7.1 Try again later",
}


def require(binary: Path) -> None:
    if binary.exists():
        return
    message = f"{binary} is missing: apt-get install postfix (.ci/run does)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class PostfixInstance:
    host: str
    port: int
    mailbox: Path

    def delivered(self) -> list[bytes]:
        folder = self.mailbox / "new"
        return [p.read_bytes() for p in sorted(folder.iterdir())] if folder.is_dir() else []


def _master_cf(port: int) -> str:
    for candidate in (Path("/usr/share/postfix/master.cf.dist"), Path("/etc/postfix/master.cf")):
        if candidate.exists():
            lines = candidate.read_text().splitlines()
            break
    else:
        raise RuntimeError("no master.cf template in the postfix package")
    out = []
    for line in lines:
        if line.startswith("smtp ") and " inet " in line:
            line = f"127.0.0.1:{port} inet n - n - - smtpd"
        out.append(line)
    return "\n".join(out) + "\n"


@pytest.fixture(scope="session")
def postfix() -> Iterator[PostfixInstance]:
    require(POSTFIX)
    # Not under pytest's tmp folder: its parents are private to root, and Postfix's
    # daemons run as the postfix user and must reach their data directory.
    root = Path(tempfile.mkdtemp(prefix="postwise-postfix-"))
    root.chmod(0o755)
    etc, queue, data, mail = (root / n for n in ("etc", "queue", "data", "mail"))
    for folder in (etc, queue, data, mail):
        folder.mkdir()
    nobody = pwd.getpwnam("nobody")
    postfix_user = pwd.getpwnam("postfix")
    os.chown(data, postfix_user.pw_uid, postfix_user.pw_gid)
    os.chown(mail, nobody.pw_uid, nobody.pw_gid)
    port = free_port()
    (etc / "rcpt").write_text("".join(f"{a} {r}\n" for a, r in ANSWERS.items()))
    (etc / "main.cf").write_text(
        f"""compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix-test.localdomain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file = /dev/stdout
smtpd_recipient_restrictions = check_recipient_access texthash:{etc}/rcpt, permit_mynetworks, reject
virtual_mailbox_domains = static:ALL
virtual_mailbox_base = {mail}
virtual_mailbox_maps = static:box/
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
virtual_minimum_uid = 1
message_size_limit = 52428800
virtual_mailbox_limit = 0
alias_maps =
alias_database =
local_header_rewrite_clients =
smtpd_banner = $myhostname ESMTP
"""
    )
    (etc / "master.cf").write_text(_master_cf(port))
    check = subprocess.run([str(POSTFIX), "-c", str(etc), "check"], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"postfix check failed: {check.stdout}{check.stderr}")
    log = open(root / "maillog", "wb")  # noqa: SIM115 (closed after the instance stops)
    process = subprocess.Popen(
        [str(POSTFIX), "-c", str(etc), "start-fg"], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for_port(port)
        yield PostfixInstance("127.0.0.1", port, mail / "box")
    finally:
        subprocess.run([str(POSTFIX), "-c", str(etc), "stop"], capture_output=True)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
