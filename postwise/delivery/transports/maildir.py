"""Capture: every message is written, byte for byte as a relay would get it, to a maildir.

The embedded mode's default, so a laptop never mails a real person. File names carry
the workspace and outbox ids (``<time>.<unique>.w<ws>o<outbox>.postwise``) so the API
can list one workspace's messages without parsing any file. Writes follow the maildir
protocol (``tmp/`` then rename into ``new/``): a reader never sees half a message.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from postwise.core.errors import NotFound
from postwise.delivery.transports.base import (
    DeliveryResult,
    Envelope,
    Outcome,
    Phase,
    RecipientResult,
    same_for_all,
)

_NAME = re.compile(r"^(\d+)\.([0-9a-f]+)\.w(\d+)o(\d+)\.postwise$")


class MaildirTransport:
    name = "capture"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _write(self, envelope: Envelope) -> str:
        for sub in ("tmp", "new", "cur"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        name = (
            f"{time.time_ns()}.{secrets.token_hex(6)}."
            f"w{envelope.workspace_id or 0}o{envelope.outbox_id or 0}.postwise"
        )
        tmp = self.directory / "tmp" / name
        with open(tmp, "wb") as handle:
            handle.write(envelope.data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, self.directory / "new" / name)
        return name

    async def deliver(self, envelope: Envelope) -> DeliveryResult:
        try:
            name = self._write(envelope)
        except OSError as exc:
            result = RecipientResult(
                Outcome.DEFERRED, None, f"cannot write to {self.directory}: {exc}", Phase.LOCAL
            )
            return same_for_all(envelope, self.name, result)
        accepted = RecipientResult(Outcome.ACCEPTED, 250, f"2.0.0 captured as {name}", Phase.LOCAL)
        return same_for_all(envelope, self.name, accepted, host=str(self.directory))

    async def close(self) -> None:
        return None


@dataclass(frozen=True)
class CapturedFile:
    name: str
    workspace_id: int
    outbox_id: int
    captured_at: datetime
    size: int


def list_captured(directory: Path, workspace_id: int, *, limit: int = 50) -> list[CapturedFile]:
    """Newest first, one workspace's captured messages."""
    found: list[CapturedFile] = []
    for sub in ("new", "cur"):
        folder = Path(directory) / sub
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            match = _NAME.match(entry.name.split(":", 1)[0])
            if match is None or int(match.group(3)) != workspace_id:
                continue
            found.append(
                CapturedFile(
                    entry.name,
                    workspace_id,
                    int(match.group(4)),
                    datetime.fromtimestamp(int(match.group(1)) / 1e9, UTC),
                    entry.stat().st_size,
                )
            )
    found.sort(key=lambda f: f.name, reverse=True)
    return found[:limit]


def read_captured(directory: Path, workspace_id: int, name: str) -> bytes:
    match = _NAME.match(name.split(":", 1)[0])
    if match is None or int(match.group(3)) != workspace_id or "/" in name:
        raise NotFound(f"captured file {name!r} does not exist", field="name")
    for sub in ("new", "cur"):
        path = Path(directory) / sub / name
        if path.is_file():
            return path.read_bytes()
    raise NotFound(f"captured file {name!r} does not exist", field="name")
