"""Stage 3: every marketing message carries the sender's postal address and an unsubscribe link.

A template that already shows ``unsubscribe_url`` keeps its own wording; otherwise a
standard footer is appended (before ``</body>`` in HTML, at the end of the text), so a
template can never send marketing mail without a way out.
"""

from __future__ import annotations

from html import escape

from postwise.core.errors import ValidationFailed
from postwise.messages.pipeline import Draft


def add_footer(draft: Draft) -> Draft:
    if draft.delivery.kind != "marketing":
        return draft
    postal = draft.sender.postal_address.strip()
    if not postal:
        raise ValidationFailed(
            "Marketing mail must show the sender's postal address; set it on the sender.",
            code="postal_address_required",
            field="postal_address",
        )
    url = draft.unsubscribe_url
    html_url = escape(url, quote=True)
    if draft.html and (html_url not in draft.html or postal.split("\n")[0] not in draft.html):
        block = (
            '<div style="margin-top:24px;font-size:12px;color:#666666;line-height:18px">'
            f"{escape(draft.sender.from_name or draft.sender.workspace_name)}<br>"
            f"{'<br>'.join(escape(line) for line in postal.splitlines())}<br>"
            f'<a href="{html_url}" style="color:#666666">Unsubscribe</a></div>'
        )
        at = draft.html.rfind("</body>")
        if at < 0:
            at = draft.html.lower().rfind("</body>")
        draft.html = draft.html + block if at < 0 else draft.html[:at] + block + draft.html[at:]
    if draft.text and (url not in draft.text or postal.split("\n")[0] not in draft.text):
        draft.text = f"{draft.text.rstrip()}\n\n--\n{postal}\nUnsubscribe: {url}\n"
    return draft
