"""Campaign analytics: incremental hourly rollups of email events and reports read from them.

See docs/analytics.md. Reports never scan the raw ``events`` table at request time.
"""
