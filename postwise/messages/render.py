"""Stage 2: render the template's parts with the contact's context."""

from __future__ import annotations

from postwise.messages.pipeline import Draft


def render(draft: Draft) -> Draft:
    parts = draft.template.render(draft.context)
    draft.subject = parts.subject
    draft.preheader = parts.preheader
    draft.html = parts.html
    draft.text = parts.text
    return draft
