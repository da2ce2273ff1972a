"""Campaign analytics: incremental hourly rollups of email events and reports read from them.

See docs/analytics.md. Reports never scan the raw ``events`` table at request time.
"""

from postwise.analytics import fields as _fields  # registers contact.engagement_score

del _fields
