"""``postwise serve`` and ``postwise run`` as an operator starts them: real processes and ports."""

from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import subprocess
import sys
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import IO

import httpx
import pytest

from postwise.delivery.capture import WORKSPACE_HEADER


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWISE_")}
    env |= {
        "POSTWISE_DATA_DIR": str(data_dir),
        "POSTWISE_ENVIRONMENT": "test",
        "POSTWISE_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",  # keep the panel's keys on one line
    }
    return env | extra


def postwise(*args: str) -> list[str]:
    return [sys.executable, "-m", "postwise.cli.main", *args]


def test_serve_refuses_a_database_that_is_not_migrated(tmp_path: Path) -> None:
    result = subprocess.run(
        postwise("serve", "--port", "0"),
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "none (empty)" in message
    assert "postwise db upgrade" in message
    assert "Traceback" not in result.stderr


def test_serve_answers_on_a_migrated_database_and_stops_on_sigint(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    subprocess.run(postwise("db", "upgrade"), env=env, capture_output=True, timeout=60, check=True)
    process = Process(postwise("serve", "--host", "127.0.0.1", "--port", "0"), env)
    try:
        port = process.wait_for(r'"port": (\d+)', stream="stderr").group(1)
        wait_healthy(f"http://127.0.0.1:{port}")
        assert process.stop() == 0
    finally:
        process.kill()
    assert "Traceback" not in "".join(process.stderr)


class Process:
    """A running ``postwise run`` whose output is read as it comes."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str], into: list[str]) -> None:
        for line in stream:  # one line at a time, so waiters see output as it comes
            into.append(line)

    def wait_for(self, pattern: str, stream: str = "stdout", timeout: float = 60) -> re.Match[str]:
        lines = self.stdout if stream == "stdout" else self.stderr
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, "".join(lines))
            if match:
                return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"no {pattern!r} in output:\n{''.join(self.stdout)}\n{''.join(self.stderr)}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=60)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_healthy(api: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail("postwise run never became healthy")


def start_run(env: dict[str, str]) -> tuple[Process, str, int, int, str]:
    """``postwise run --demo`` up and healthy: the process, API URL, SMTP port, workspace, key."""
    process = Process(postwise("run", "--demo"), env)
    try:
        api = process.wait_for(r"API\s+(http://127\.0\.0\.1:\d+)").group(1)
        smtp_port = int(process.wait_for(r"smtp://127\.0\.0\.1:(\d+)").group(1))
        workspace = int(process.wait_for(r"Demo workspace\s+(\d+)").group(1))
        key = process.wait_for(r"Admin API key\s+(pw_sk_[A-Za-z0-9_-]+)").group(1)
        wait_healthy(api)
    except BaseException:
        process.kill()
        raise
    return process, api, smtp_port, workspace, key


def captured_subjects(api: str, key: str) -> list[str]:
    listing = httpx.get(
        f"{api}/api/captured-messages", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert listing.status_code == 200, listing.text
    return [m["subject"] for m in listing.json()["data"]]


def refreshed_segments(api: str, key: str, timeout: float = 60) -> dict[str, int]:
    """The demo's playbook segments once the embedded worker has refreshed them all."""
    deadline = time.monotonic() + timeout
    while True:
        listing = httpx.get(
            f"{api}/api/segments", headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        assert listing.status_code == 200, listing.text
        rows = listing.json()["data"]
        if rows and all(r["refreshed_at"] for r in rows):
            return {r["name"]: r["member_count"] for r in rows}
        assert time.monotonic() < deadline, f"segments not refreshed: {rows}"
        time.sleep(0.5)


@pytest.mark.slow
def test_run_demo_serves_api_worker_and_capture_in_one_process(tmp_path: Path) -> None:
    env = cli_env(
        tmp_path,
        POSTWISE_API_PORT="0",
        POSTWISE_CAPTURE_SMTP_PORT="0",
        POSTWISE_INBOUND_SMTP_PORT="0",
    )
    process, api, smtp_port, workspace, key = start_run(env)
    try:
        assert "loading demo data" in "".join(process.stdout)
        # The bounce listener runs too, for the VERP domain only.
        bounces = int(process.wait_for(r"Bounces \(SMTP\)\s+smtp://127\.0\.0\.1:(\d+)").group(1))
        with smtplib.SMTP("127.0.0.1", bounces, timeout=10) as smtp:
            dsn = b"From: MAILER-DAEMON@mx.example\r\nSubject: Undelivered\r\n\r\nfailed\r\n"
            assert smtp.sendmail("", ["bounces+abc@bounce.postwise.test"], dsn) == {}
        msg = EmailMessage()
        msg["From"] = "news@postwise.test"
        msg["To"] = "ann@customer.test"
        msg["Subject"] = "Hello from the test"
        msg[WORKSPACE_HEADER] = str(workspace)
        msg.set_content("hi")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            smtp.send_message(msg)
        assert captured_subjects(api, key) == ["Hello from the test"]
        # The playbook segments are seeded and filled by the worker's refresh jobs.
        segments = refreshed_segments(api, key)
        assert len(segments) == 8 and segments["Cart abandoners"] >= 0  # 7 playbooks + 1
        assert segments["Enterprise decision makers"] > 0
        # The demo's sent campaign to its "Decision makers" segment has a report.
        auth = {"Authorization": f"Bearer {key}"}
        listed = httpx.get(f"{api}/api/campaigns", headers=auth, timeout=10).json()["data"]
        [sent] = [c for c in listed if c["key"] == "q4-decision-makers"]
        report = httpx.get(f"{api}/api/analytics/campaigns/{sent['id']}", headers=auth, timeout=10)
        totals = report.json()["totals"]
        assert totals["sent"] > 0 and totals["opens_human"] > 0 and totals["opens_machine"] > 0

        other = subprocess.run(
            postwise("workspace", "create", "Other", "--json"),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert captured_subjects(api, json.loads(other.stdout)["api_key"]) == []
        assert process.stop() == 0
    finally:
        process.kill()
    assert "Postwise stopped." in "".join(process.stdout)
    assert "Traceback" not in "".join(process.stderr)

    # A restart keeps the demo and, since keys are stored hashed, shows a new usable key.
    again, api, _, same_workspace, new_key = start_run(env)
    try:
        assert same_workspace == workspace
        assert new_key != key
        assert "loading demo data" not in "".join(again.stdout)
        assert "issued for this start" in "".join(again.stdout)
        assert captured_subjects(api, new_key) == ["Hello from the test"]
        assert again.stop() == 0
    finally:
        again.kill()
    assert "Traceback" not in "".join(again.stderr)
