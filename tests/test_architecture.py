"""Dependencies point inward: the domain never needs the web framework, a database
driver or an SMTP client to be imported (STYLE.md, point 10)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import postwise

# Packages that face the outside world and may import anything.
EDGES = {"api", "cli", "web", "worker"}
FORBIDDEN = ("fastapi", "starlette", "uvicorn", "psycopg", "aiosmtplib", "typer")


def domain_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(postwise.__path__, "postwise."):
        top = info.name.split(".")[1]
        if top in EDGES or ".migrations" in info.name:
            continue
        names.append(info.name)
    return sorted(names)


def test_there_is_a_domain_to_check() -> None:
    modules = domain_modules()
    assert "postwise.contacts.actions" in modules
    assert "postwise.storage.tenancy" in modules


def test_domain_imports_without_web_framework_drivers_or_smtp_clients() -> None:
    modules = domain_modules()
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"loaded = sorted(m for m in {FORBIDDEN!r} if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"domain modules pulled in: {result.stdout.strip()}"
