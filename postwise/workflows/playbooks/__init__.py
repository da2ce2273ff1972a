"""Playbook workflows shipped as data: one JSON file each, installable as they are.

A file holds ``name``, ``description``, ``params`` (defaults; ``null`` means the installer
must supply it, e.g. the id of the "Inactive" segment), ``templates`` (the template keys
the workflow sends, each with a subject, preheader and HTML body the installer creates
when the workspace has no template of that name) and ``workflow`` (the definition). A
string ``"${param}"`` anywhere in the workflow is replaced by the param's value, keeping
its type. Each playbook runs over 60 simulated days in tests/workflows/test_playbooks.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from postwise.workflows.definition import InvalidWorkflow, Workflow, WorkflowContext, parse_workflow

KEYS = (
    "welcome",
    "lead_nurture",
    "onboarding",
    "cart_abandonment",
    "trial_not_converted",
    "reengagement_sunset",
    "birthday",
    "anniversary",
    "post_purchase",
)
_PARAM = re.compile(r"\$\{([a-z_]+)\}")


@dataclass(frozen=True)
class TemplateSeed:
    key: str
    subject: str
    preheader: str
    html: str


@dataclass(frozen=True)
class Playbook:
    key: str
    name: str
    description: str
    params: Mapping[str, Any]
    raw_templates: Mapping[str, Any]
    raw: Mapping[str, Any]

    def templates(self, params: Mapping[str, Any] | None = None) -> tuple[TemplateSeed, ...]:
        """The templates the workflow sends, params filled in, for the installer to create
        where the workspace has none of that name."""
        values = self._values(params)
        return tuple(
            TemplateSeed(key, *(_fill(t[k], values) for k in ("subject", "preheader", "html")))
            for key, t in self.raw_templates.items()
        )

    def document(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The workflow document with params filled in (given ones over the defaults)."""
        filled: dict[str, Any] = _fill(self.raw, self._values(params))
        return filled

    def _values(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        values = {**self.params, **(params or {})}
        unknown = sorted(set(params or {}) - set(self.params))
        if unknown:
            raise InvalidWorkflow(
                f"playbook {self.key!r} has no param {unknown[0]!r}; it takes "
                f"{', '.join(self.params) or 'none'}",
                code="unknown_param",
                field=unknown[0],
            )
        missing = sorted(k for k, v in values.items() if v is None)
        if missing:
            raise InvalidWorkflow(
                f"playbook {self.key!r} needs param {missing[0]!r}",
                code="missing_param",
                field=missing[0],
            )
        return values

    def workflow(
        self, params: Mapping[str, Any] | None = None, ctx: WorkflowContext | None = None
    ) -> Workflow:
        return parse_workflow(self.document(params), ctx)


def _fill(value: Any, params: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        whole = _PARAM.fullmatch(value)
        if whole is not None:
            return params[whole.group(1)]
        return _PARAM.sub(lambda m: str(params[m.group(1)]), value)
    if isinstance(value, list):
        return [_fill(v, params) for v in value]
    if isinstance(value, Mapping):
        return {k: _fill(v, params) for k, v in value.items()}
    return value


def playbook(key: str) -> Playbook:
    """The shipped playbook ``key``; KeyError if there is none."""
    if key not in KEYS:
        raise KeyError(key)
    raw = json.loads(resources.files(__package__).joinpath(f"{key}.json").read_text("utf-8"))
    return Playbook(
        key=key,
        name=raw["name"],
        description=raw["description"],
        params=dict(raw.get("params", {})),
        raw_templates=raw["templates"],
        raw=raw["workflow"],
    )


def playbooks() -> list[Playbook]:
    return [playbook(key) for key in KEYS]
