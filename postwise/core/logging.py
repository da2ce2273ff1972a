"""structlog set up once per process: readable in a terminal, JSON in production."""

from __future__ import annotations

import logging
import sys

import structlog

from postwise.core.settings import Settings


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of writing, not at configuration:
    test runners and embedding programs swap it, and a closed stream must not break us."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(settings: Settings) -> None:
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    renderer: structlog.typing.Processor
    if settings.log_format == "json" or settings.environment == "production":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(
        level=level,
        stream=_CurrentStderr(),
        format="%(name)s %(levelname)s %(message)s",
        force=True,
    )
