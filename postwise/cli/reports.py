"""``postwise report``: campaign, segment and list results from the analytics rollups,
list hygiene, and the stored CLTV uplift.

Human and machine activity in separate columns; ``--json`` for scripts, ``--html`` for a
self-contained page with charts (docs/analytics.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
        ("deferred", "deferred"),
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


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


@report_app.command("hygiene")
def hygiene_command(
    kind: str = typer.Option("segment", "--by", help="segment or list"),
    workspace: int = WORKSPACE,
    as_json: bool = AS_JSON,
) -> None:
    """Bounce, unsubscribe, complaint and conversion rates per segment or per list."""
    from postwise.analytics import report

    with workspace_session(workspace) as s:
        rows = report.hygiene(s, kind)
    if as_json:
        print_json({"kind": kind, "data": rows})
        return
    table = Table(title=f"List hygiene per {kind}")
    table.add_column("id", justify="right")
    table.add_column("name", no_wrap=True)
    for name in ("sent", "delivered", "bounce", "unsub", "complaint", "conversion"):
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["name"] or "(removed)",
            f"{int(r['sent']):,}",
            f"{int(r['delivered']):,}",
            _percent(r["bounce_rate"]),
            _percent(r["unsubscribe_rate"]),
            _percent(r["complaint_rate"]),
            _percent(r["conversion_rate"]),
        )
    console.print(table)


def _summary(title: str, doc: dict[str, Any], extra: dict[str, str]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in ("sent", "delivered", "conversions", "unsubscribes", "complaints"):
        table.add_row(name, f"{int(doc['totals'][name]):,}")
    table.add_row(
        "bounces", f"{int(doc['totals']['bounced_hard'] + doc['totals']['bounced_soft']):,}"
    )
    table.add_row("revenue", f"{doc['totals']['revenue']:,.2f}")
    for name in ("bounce_rate", "unsubscribe_rate", "complaint_rate", "conversion_rate"):
        table.add_row(name.replace("_", " "), _percent(doc["kpis"][name]))
    for name, value in extra.items():
        table.add_row(name, value)
    return table


@report_app.command("segment")
def segment_command(
    segment_id: int = typer.Argument(..., help="Segment id."),
    workspace: int = WORKSPACE,
    as_json: bool = AS_JSON,
) -> None:
    """A segment over every campaign sent through it, and its members' mean engagement."""
    from postwise.analytics import report

    with workspace_session(workspace) as s:
        doc = report.segment_report(s, segment_id)
    if as_json:
        print_json(doc)
        return
    extra = {"engagement score (mean)": f"{doc['engagement_score_mean']:.3f}"}
    console.print(_summary(f"Segment {doc['name']} ({segment_id})", doc, extra))


@report_app.command("list")
def list_command(
    list_id: int = typer.Argument(..., help="List id."),
    workspace: int = WORKSPACE,
    as_json: bool = AS_JSON,
) -> None:
    """A list over every campaign sent through it."""
    from postwise.analytics import report

    with workspace_session(workspace) as s:
        doc = report.list_report(s, list_id)
    if as_json:
        print_json(doc)
        return
    console.print(_summary(f"List {doc['name']} ({list_id})", doc, {}))


@report_app.command("uplift")
def uplift_command(
    workspace: int = WORKSPACE,
    event: str = typer.Option("Order Completed", "--event", help="The conversion event."),
    revenue_property: str = typer.Option("revenue", "--revenue-property"),
    window_days: int = typer.Option(90, "--window-days", help="Days after first reach."),
    refresh: bool = typer.Option(False, "--refresh", help="Compute and store it now."),
    as_json: bool = AS_JSON,
) -> None:
    """CLTV uplift of contacts reached by segmented campaigns over matched ones that were
    not (docs/analytics.md); reads the stored result unless --refresh."""
    from postwise.analytics import uplift

    params = uplift.Params(event, revenue_property, window_days)
    with workspace_session(workspace) as s:
        doc = uplift.refresh(s, params) if refresh else uplift.stored(s, params)
    if as_json:
        print_json(doc)
        return

    def money(value: float | None) -> str:
        return "-" if value is None else f"{value:,.2f}"

    table = Table(title=f"CLTV uplift: {event} ({revenue_property}), {window_days} days")
    table.add_column("metric")
    table.add_column("value", justify="right")
    ci = doc["uplift_ci95"]
    for label, value in (
        ("reached contacts (matched)", f"{doc['reached']:,}"),
        ("comparison contacts", f"{doc['comparison']:,}"),
        ("reached, no comparable contact", f"{doc['unmatched_reached']:,}"),
        ("revenue per reached contact", money(doc["reached_revenue_per_contact"])),
        ("revenue per comparison contact", money(doc["comparison_revenue_per_contact"])),
        ("uplift per contact", money(doc["uplift"])),
        ("95% interval", "-" if ci is None else f"{money(ci[0])} .. {money(ci[1])}"),
        ("relative uplift", _percent(doc["relative_uplift"])),
        ("computed at", doc["computed_at"]),
    ):
        table.add_row(label, value)
    console.print(table)
    strata = Table(title="Strata (company size band x industry)")
    strata.add_column("size band")
    strata.add_column("industry")
    for name in ("reached", "comparison", "reached/contact", "comparison/contact", "difference"):
        strata.add_column(name, justify="right")
    for row in doc["strata"]:
        strata.add_row(
            row["size_band"],
            row["industry"],
            f"{row['reached']:,}",
            f"{row['comparison']:,}",
            money(row["reached_revenue_per_contact"]),
            money(row["comparison_revenue_per_contact"]),
            money(row["difference"]),
        )
    console.print(strata)


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
