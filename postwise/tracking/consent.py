"""Whether a message to a contact may carry click-tracking links and the open pixel.

Postwise is for B2B mail, where tracking engagement with a business message is commonly
done on legitimate interest, with an objection honoured: so the default is on, and a
contact's own choice always wins over the workspace's. Three inputs (docs/tracking.md,
"Tracking consent"):

* the workspace setting ``settings["tracking"]``: ``"on"`` (default: track unless the
  contact objected), ``"consent"`` (track only contacts who opted in; for audiences
  where tracking needs prior consent) or ``"off"``;
* the contact's boolean attribute ``email_tracking`` (declare it with
  ``postwise attribute create email_tracking --type boolean``): ``false`` is an
  objection and is always respected, ``true`` an opt-in that counts in ``"consent"``
  mode; absent means the workspace's default;
* a message to an address with no contact row is tracked only in ``"on"`` mode.

List consent records (``consents``) are not read: they record agreement to receive a
list's mail, not to tracking, and counting them would read more into them than the
person agreed to. Suppressed, unsubscribed or bounced contacts are not mailed at all,
so their status needs no rule here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, cast

from sqlalchemy.orm import Session

from postwise.core.errors import NotFound, ValidationFailed
from postwise.storage.tables import Workspace

SETTING = "tracking"
ATTRIBUTE = "email_tracking"
MODES = ("on", "consent", "off")
Mode = Literal["on", "consent", "off"]


def mode(workspace_settings: Mapping[str, Any] | None) -> Mode:
    """The workspace's mode; anything unrecognised counts as the safest, ``off``."""
    value = (workspace_settings or {}).get(SETTING, "on")
    if value in MODES:
        return cast(Mode, value)
    return "off"


def allowed(
    workspace_settings: Mapping[str, Any] | None,
    contact_attributes: Mapping[str, Any] | None,
    *,
    has_contact: bool = True,
) -> bool:
    """May this message carry tracked links and the pixel?"""
    workspace_mode = mode(workspace_settings)
    if workspace_mode == "off":
        return False
    choice = (contact_attributes or {}).get(ATTRIBUTE) if has_contact else None
    if choice is False:
        return False
    if workspace_mode == "consent":
        return choice is True
    return True


def set_mode(session: Session, workspace_id: int, value: str) -> Mode:
    """Store the workspace's mode (``postwise workspace tracking``); running deliverers
    pick it up within ``delivery.compose.SETTINGS_TTL_SECONDS``."""
    if value not in MODES:
        raise ValidationFailed(
            f"tracking mode must be one of {', '.join(MODES)}, not {value!r}",
            code="invalid_tracking_mode",
            field="tracking",
        )
    workspace = session.get(Workspace, workspace_id)
    if workspace is None:
        raise NotFound(f"No workspace {workspace_id}.", code="workspace_not_found")
    workspace.settings = {**(workspace.settings or {}), SETTING: value}  # a new dict: tracked
    return cast(Mode, value)


def mode_of(session: Session, workspace_id: int) -> Mode:
    workspace = session.get(Workspace, workspace_id)
    if workspace is None:
        raise NotFound(f"No workspace {workspace_id}.", code="workspace_not_found")
    return mode(workspace.settings)
