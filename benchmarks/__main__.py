"""``make bench``: ``python -m benchmarks [SUITE [ARGS...]]``.

Without arguments every suite in ``SUITES`` runs with its defaults, one after the other;
with a suite name, only that one, with the arguments that follow (``--help`` lists them).
A suite is a module of this package with ``main(argv)``; add yours to ``SUITES``.
"""

from __future__ import annotations

import importlib
import sys

SUITES = {
    "imports": "benchmarks.imports",  # CSV import (SQLite, PostgreSQL) and the bulk API
    "tracking": "benchmarks.tracking_ingest",  # /v1/batch beside a bare JSON endpoint
    "messages": "benchmarks.message_build",  # building one message, stage by stage
    "send": "benchmarks.send_pipeline",  # outbox -> SMTP to smtp-sink, 1 and 2 workers
    "segments": "benchmarks.segments",  # playbook counts vs hand-written SQL, real-time p99
    "bounces": "benchmarks.bounce_parse",  # parse + classify bounces over the corpus
    "clicks": "benchmarks.click_latency",  # /c/ redirect latency at 500/s beside a bare redirect
    "workflows": "benchmarks.workflow_steps",  # steps/s by 1 and 2 workers, trigger latency
    "campaigns": "benchmarks.campaign_fanout",  # 1M-recipient fan-out beside a bare INSERT
    "report": "benchmarks.campaign_report",  # 1M-recipient report from rollups vs raw events
    "uplift": "benchmarks.analytics_uplift",  # CLTV uplift job over 1M contacts vs stored read
}


def main(argv: list[str]) -> None:
    if argv and argv[0] in SUITES:
        importlib.import_module(SUITES[argv[0]]).main(argv[1:])
        return
    if argv:
        raise SystemExit(f"unknown suite {argv[0]!r}; choose from: {', '.join(SUITES)}")
    for name, module in SUITES.items():
        print(f"### {name}", flush=True)
        importlib.import_module(module).main([])


if __name__ == "__main__":
    main(sys.argv[1:])
