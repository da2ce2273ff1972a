"""``postwise report campaign REF``: a campaign's results from the analytics rollups.

Human and machine activity in separate columns; ``--json`` for scripts, ``--html`` for a
self-contained page with charts (docs/analytics.md).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from postwise.cli.contacts import AS_JSON, WORKSPACE, workspace_session
from postwise.cli.context import console, print_json

report_app = typer.Typer(help="Reports read from the analytics rollups.")
report_app.info.no_args_is_help = True


@report_app.command("campaign")
def campaign_command(
    ref: str = typer.Argument(..., help="Campaign key or id."),
    workspace: int = WORKSPACE,
    as_json: bool = AS_JSON,
    html: Path | None = typer.Option(None, "--html", help="Write a self-contained HTML report."),
) -> None:
    """Totals, rates and breakdowns of one campaign (human and machine apart)."""
    from postwise.analytics import html as html_report
    from postwise.analytics import report
    from postwise.cli.campaigns import _campaign

    with workspace_session(workspace) as s:
        campaign = _campaign(s, ref)
        result = report.campaign_report(s, campaign.id)
    if html is not None:
        html.write_text(html_report.render(result), encoding="utf-8")
        console.print(f"wrote {html}")
        return
    if as_json:
        print_json(result.as_dict())
        return
    t = result.totals
    table = Table(title=f"{result.name} ({result.key}, {result.status})")
    table.add_column("metric")
    table.add_column("human", justify="right")
    table.add_column("machine", justify="right")
    for label, field in (
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("hard bounces", "bounced_hard"),
        ("soft bounces", "bounced_soft"),
        ("filter blocked", "filter_blocked"),
        ("unsubscribes", "unsubscribes"),
        ("complaints", "complaints"),
        ("conversions", "conversions"),
    ):
        table.add_row(label, f"{int(t[field]):,}", "")
    for label, what in (("opens", "opens"), ("clicks", "clicks")):
        table.add_row(label, f"{int(t[f'{what}_human']):,}", f"{int(t[f'{what}_machine']):,}")
        table.add_row(
            f"unique {label}",
            f"{int(t[f'unique_{what}_human']):,}",
            f"{int(t[f'unique_{what}_machine']):,}",
        )
    table.add_row("revenue", f"{t['revenue']:,.2f}", "")
    for name, value in result.kpis.items():
        shown = "-" if value is None else f"{value * 100:.2f}%"
        if name == "revenue_per_recipient":  # money, not a share
            shown = f"{value or 0:,.2f}"
        table.add_row(name.replace("_", " "), shown, "")
    console.print(table)


@report_app.command("rollup")
def rollup_command(workspace: int = WORKSPACE, as_json: bool = AS_JSON) -> None:
    """Fold settled events into the rollups now, then keep the periodic job queued."""
    from postwise.analytics import jobs

    events = batches = 0
    while True:
        with workspace_session(workspace) as s:
            result = jobs.run_once(s)
            if result.events == 0:
                jobs.schedule(s)
                break
        events += result.events
        batches += 1
    doc = {"events": events, "batches": batches}
    if as_json:
        print_json(doc)
    else:
        console.print(f"rolled up {events} events in {batches} batches")
