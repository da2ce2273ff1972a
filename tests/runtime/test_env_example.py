"""``.env.example`` documents every setting with its real default, so it cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import TypeAdapter

from postwise.core.settings import Settings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def documented() -> dict[str, str]:
    pairs = re.findall(r"^(POSTWISE_[A-Z0-9_]+)=(.*)$", ENV_EXAMPLE.read_text(), re.MULTILINE)
    return dict(pairs)


def test_every_setting_is_documented_and_nothing_else() -> None:
    expected = {f"POSTWISE_{name.upper()}" for name in Settings.model_fields}
    assert set(documented()) == expected


def test_documented_values_are_the_defaults() -> None:
    for variable, value in documented().items():
        field = Settings.model_fields[variable.removeprefix("POSTWISE_").lower()]
        if value == "":
            assert field.default in ("", None), variable
        else:
            parsed = TypeAdapter(field.annotation).validate_strings(value)
            assert parsed == field.default, variable
