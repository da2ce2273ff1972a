"""``contact.engagement_score`` as a segment field, through the segments field registry.

The score lives in ``contact_engagement`` and is mirrored into the contact's
``attributes.engagement_score`` by the rollup job, because the segment evaluator reads a
contact's own row: both the SQL compiler and the Python evaluator then read one value.
"""

from __future__ import annotations

from postwise.segments.fields import FIELDS, FieldSpec, ValueType

ENGAGEMENT_FIELD = "contact.engagement_score"
ENGAGEMENT_ATTRIBUTE = "engagement_score"

if FIELDS.get(ENGAGEMENT_FIELD) is None:
    FIELDS.register(
        FieldSpec(
            name=ENGAGEMENT_FIELD,
            entity="contact",
            type=ValueType.NUMBER,
            attribute=ENGAGEMENT_ATTRIBUTE,
            description="decayed human opens, clicks and visits (docs/analytics.md)",
        )
    )
