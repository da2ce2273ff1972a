"""A private Dovecot IMAP server on loopback: its own config, state, users and maildirs.

The IMAP peer of the bounce-mailbox tests (``.ci/run`` installs Debian's
``dovecot-imapd``; without it the tests skip, except under CI where they fail). One
user, ``bounces``, with a plain password; no TLS (loopback only). As root, Dovecot's
own ``dovecot``/``dovenull`` users run the services and own the mail; otherwise the
current user runs everything.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.delivery.postfix_peer import free_port, wait_for_port

DOVECOT = Path("/usr/sbin/dovecot")
USER, PASSWORD = "bounces", "bounce-secret"


def require_dovecot() -> None:
    if DOVECOT.exists():
        return
    message = f"{DOVECOT} is missing: apt-get install dovecot-imapd (.ci/run does)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class DovecotInstance:
    port: int
    root: Path

    def client(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port)
        client.login(USER, PASSWORD)
        return client

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        client = self.client()
        try:
            status, data = client.append(folder, None, None, raw)
            assert status == "OK", data
        finally:
            client.logout()


def _config(root: Path, port: int, internal: str, login: str, uid: int, gid: int) -> str:
    return f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
default_internal_user = {internal}
default_internal_group = {internal}
default_login_user = {login}
first_valid_uid = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


@pytest.fixture
def dovecot() -> Iterator[DovecotInstance]:
    require_dovecot()
    root = Path(tempfile.mkdtemp(prefix="postwise-dovecot-"))
    root.chmod(0o755)  # Dovecot's own users must reach the folder
    port = free_port()
    if os.geteuid() == 0:
        internal, login = "dovecot", "dovenull"
        owner = pwd.getpwnam(internal)
    else:
        owner = pwd.getpwuid(os.geteuid())
        internal = login = owner.pw_name
    for sub in ("run", "state", "mail", "home"):
        (root / sub).mkdir()
        if sub in ("mail", "home"):
            os.chown(root / sub, owner.pw_uid, owner.pw_gid)
    (root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    config = root / "dovecot.conf"
    config.write_text(_config(root, port, internal, login, owner.pw_uid, owner.pw_gid))
    process = subprocess.Popen(
        [str(DOVECOT), "-F", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port)
        yield DovecotInstance(port, root)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)
