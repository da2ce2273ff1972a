"""Task names to handlers, so a job row names its code by a stable string, not an import path.

A module registers its handlers at import time with ``@task("name")``; a worker
process knows a task only if that module was imported (``postwise worker --import``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class JobContext:
    """What a handler gets: the job and the session of the transaction that also marks it done.

    Everything written through ``session`` commits together with the job's completion,
    or not at all if the worker lost its lease. ``session`` is scoped to
    ``workspace_id`` when the job has one. Effects outside the database (SMTP, HTTP)
    cannot be rolled back: make them idempotent, keyed by ``job_id``.
    """

    job_id: int
    task: str
    payload: dict[str, Any]
    workspace_id: int | None
    attempt: int
    max_attempts: int
    worker_id: str
    session: Session


Handler = Callable[[JobContext], None]


class UnknownTask(LookupError):
    """A job names a task no imported module registered; retrying would not help."""


class PermanentFailure(Exception):
    """Raise from a handler to dead-letter the job at once (bad payload, gone target)."""


class TaskRegistry:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, name: str, handler: Handler) -> Handler:
        existing = self._handlers.get(name)
        if existing is not None and existing is not handler:
            raise ValueError(
                f"task {name!r} is already registered to "
                f"{existing.__module__}.{existing.__qualname__}"
            )
        self._handlers[name] = handler
        return handler

    def task(self, name: str) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            return self.register(name, handler)

        return decorate

    def get(self, name: str) -> Handler:
        try:
            return self._handlers[name]
        except KeyError:
            raise UnknownTask(
                f"no handler registered for task {name!r}; import the module that "
                f"defines it (postwise worker --import MODULE)"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def __contains__(self, name: object) -> bool:
        return name in self._handlers


default_registry = TaskRegistry()


def task(name: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of task ``name`` in the default registry."""
    return default_registry.task(name)
