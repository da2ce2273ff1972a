"""A self-contained HTML campaign report: inline SVG drawn here, no CDN, no script.

One file a person can mail around: the funnel, opens and clicks per hour (human beside
machine), the domains table and the variants with 95% Wilson intervals on the human
open rate. Every value is escaped; the only URLs in the page are none.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from postwise.analytics.report import CampaignReport

HUMAN = "#2563eb"
MACHINE = "#f59e0b"


def wilson(successes: float, trials: float, z: float = 1.96) -> tuple[float, float]:
    if trials <= 0:
        return (0.0, 0.0)
    p = successes / trials
    den = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / den
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def funnel_svg(totals: dict[str, float]) -> str:
    steps = [
        ("Sent", totals["sent"]),
        ("Delivered", totals["delivered"]),
        ("Opened (human)", totals["unique_opens_human"]),
        ("Clicked (human)", totals["unique_clicks_human"]),
        ("Converted", totals["conversions"]),
    ]
    top = max(steps[0][1], 1)
    width, bar_h, gap = 560, 30, 10
    parts = [
        f'<svg class="chart funnel" role="img" aria-label="Funnel" width="{width}" '
        f'height="{len(steps) * (bar_h + gap)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (label, value) in enumerate(steps):
        w = max(2.0, (width - 200) * value / top)
        y = i * (bar_h + gap)
        parts.append(
            f'<rect x="150" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{HUMAN}" '
            f'opacity="{1 - i * 0.12:.2f}"/>'
            f'<text x="140" y="{y + 20}" text-anchor="end">{escape(label)}</text>'
            f'<text x="{150 + w + 6:.1f}" y="{y + 20}">{int(value):,}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def hourly_svg(points: list[dict[str, Any]], what: str) -> str:
    """Bars per hour: human and machine side by side, so proxies cannot hide in the total."""
    width, height, pad = 640, 200, 30
    n = max(len(points), 1)
    top = max([1.0] + [max(p[f"{what}_human"], p[f"{what}_machine"]) for p in points])
    slot = (width - 2 * pad) / n
    bar = max(1.0, slot / 2 - 1)
    parts = [
        f'<svg class="chart hourly {what}" role="img" aria-label="{what} per hour" '
        f'width="{width}" height="{height + 20}" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{pad}" y1="{height}" x2="{width - pad}" y2="{height}" stroke="#999"/>',
    ]
    for i, p in enumerate(points):
        x = pad + i * slot
        for j, (side, colour) in enumerate((("human", HUMAN), ("machine", MACHINE))):
            v = p[f"{what}_{side}"]
            h = (height - 10) * v / top
            parts.append(
                f'<rect class="{side}" x="{x + j * bar:.1f}" y="{height - h:.1f}" '
                f'width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{escape(p['at'])} {side}: {int(v)}</title></rect>"
            )
    if points:
        parts.append(f'<text x="{pad}" y="{height + 15}">{escape(points[0]["at"][:13])}h</text>')
    parts.append(
        f'<text x="{width - pad}" y="14" text-anchor="end">'
        f'<tspan fill="{HUMAN}">■ human</tspan> <tspan fill="{MACHINE}">■ machine</tspan></text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def variants_svg(rows: list[Any]) -> str:
    width, row_h = 560, 28
    parts = [
        f'<svg class="chart variants" role="img" aria-label="Variants" width="{width}" '
        f'height="{max(len(rows), 1) * row_h + 10}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, row in enumerate(rows):
        c = row.counters
        trials = c["delivered"] or c["sent"]
        p = c["unique_opens_human"] / trials if trials else 0.0
        lo, hi = wilson(c["unique_opens_human"], trials)
        y = i * row_h + 14
        scale = width - 160
        parts.append(
            f'<text x="0" y="{y + 4}">{escape(row.id)}</text>'
            f'<line x1="{80 + lo * scale:.1f}" y1="{y}" x2="{80 + hi * scale:.1f}" y2="{y}" '
            f'stroke="{HUMAN}" stroke-width="3"/>'
            f'<circle cx="{80 + p * scale:.1f}" cy="{y}" r="5" fill="{HUMAN}"/>'
            f'<text x="{width - 70}" y="{y + 4}">{p * 100:.1f}%</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render(report: CampaignReport) -> str:
    t, k = report.totals, report.kpis
    cards = [
        ("Delivered", _pct(k["delivery_rate"])),
        ("Open rate (human)", _pct(k["open_rate"])),
        ("Click rate (human)", _pct(k["click_rate"])),
        ("Click-to-open", _pct(k["click_to_open"])),
        ("Machine opens", f"{int(t['opens_machine']):,}"),
        ("Conversion rate", _pct(k["conversion_rate"])),
        ("Revenue", f"{t['revenue']:,.2f}"),
        ("Revenue / recipient", f"{k['revenue_per_recipient'] or 0:,.2f}"),
    ]
    delivery = "".join(
        f"<tr><td>{escape(label)}</td><td>{int(t[name]):,}</td></tr>"
        for label, name in (
            ("Sent", "sent"),
            ("Delivered", "delivered"),
            ("Deferred (at least once)", "deferred"),
            ("Hard bounces", "bounced_hard"),
            ("Soft bounces", "bounced_soft"),
            ("Filter blocked", "filter_blocked"),
            ("Unsubscribes", "unsubscribes"),
            ("Complaints", "complaints"),
        )
    )
    activity = "".join(
        f"<tr><td>{escape(label)}</td><td>{int(t[f'{what}_human']):,}</td>"
        f"<td>{int(t[f'{what}_machine']):,}</td></tr>"
        for label, what in (
            ("Opens", "opens"),
            ("Unique opens", "unique_opens"),
            ("Clicks", "clicks"),
            ("Unique clicks", "unique_clicks"),
        )
    )
    domain_rows = sorted(report.breakdowns["domain"], key=lambda r: -r.counters["sent"])[:25]
    domains = "".join(
        f"<tr><td>{escape(r.id)}</td><td>{int(r.counters['sent']):,}</td>"
        f"<td>{_pct(r.kpis['delivery_rate'])}</td><td>{_pct(r.kpis['open_rate'])}</td>"
        f"<td>{int(r.counters['opens_machine']):,}</td><td>{_pct(r.kpis['bounce_rate'])}</td></tr>"
        for r in domain_rows
    )
    variant_rows = report.breakdowns["variant"]
    variants = variants_svg(variant_rows) if variant_rows else "<p>No A/B test.</p>"
    card_html = "".join(f'<div class="card">{escape(a)}<b>{escape(b)}</b></div>' for a, b in cards)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{escape(report.name)}: campaign report</title>
<style>
body{{font:14px system-ui,sans-serif;margin:2rem;color:#111;max-width:60rem}}
.cards{{display:flex;flex-wrap:wrap;gap:1rem}}
.card{{border:1px solid #ddd;border-radius:8px;padding:.7rem 1rem;min-width:8rem}}
.card b{{display:block;font-size:1.5rem}}
table{{border-collapse:collapse}}
td,th{{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:right}}
td:first-child,th:first-child{{text-align:left}} svg text{{font-size:12px}}
</style></head><body>
<h1>{escape(report.name)} <small>({escape(report.key)}, {escape(report.status)})</small></h1>
<p>{report.recipients:,} recipients. Rates count people; machine opens and clicks
(privacy proxies, link scanners) are shown apart.</p>
<div class="cards">{card_html}</div>
<h2>Funnel</h2>{funnel_svg(t)}
<h2>Delivery</h2>
<table class="delivery"><tr><th>Messages</th><th>Count</th></tr>{delivery}</table>
<h2>People and machines</h2>
<table class="activity"><tr><th></th><th>Human</th><th>Machine</th></tr>{activity}</table>
<h2>Opens per hour</h2>{hourly_svg(report.hourly, "opens")}
<h2>Clicks per hour</h2>{hourly_svg(report.hourly, "clicks")}
<h2>Variants (human open rate, 95% interval)</h2>{variants}
<h2>Recipient domains</h2>
<table class="domains"><tr><th>Domain</th><th>Sent</th><th>Delivered</th>
<th>Open (human)</th><th>Machine opens</th><th>Bounce</th></tr>{domains}</table>
</body></html>
"""
