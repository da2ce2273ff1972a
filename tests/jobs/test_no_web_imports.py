"""Workers must start without the web stack: the jobs package may not pull in FastAPI."""

from __future__ import annotations

import subprocess
import sys


def test_jobs_package_imports_without_fastapi() -> None:
    code = (
        "import sys\n"
        "import postwise.jobs, postwise.jobs.builtin, postwise.jobs.runner\n"
        "loaded = sorted(m for m in ('fastapi', 'starlette', 'uvicorn') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
