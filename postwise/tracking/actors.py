"""Who caused an event: a person or a machine acting for them (docs/tracking-web.md).

Events that are labelled (email opens and clicks) carry ``properties.machine`` (a boolean)
and ``properties.machine_reason`` (why, e.g. ``apple_mpp``). Every reader (the events API,
the contact timeline) turns them into the same two fields with ``actor`` here, so the
label is written once, where the event is recorded, and shown the same way everywhere.
"""

from __future__ import annotations

from typing import Any

MACHINE_KEY = "machine"
MACHINE_REASON_KEY = "machine_reason"


def actor(properties: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """("human" | "machine" | None, reason); None when the event carries no label."""
    flag = (properties or {}).get(MACHINE_KEY)
    if not isinstance(flag, bool):
        return None, None
    reason = (properties or {}).get(MACHINE_REASON_KEY)
    return ("machine" if flag else "human"), (reason if isinstance(reason, str) else None)
