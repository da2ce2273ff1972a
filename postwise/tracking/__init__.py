"""Event tracking: Segment-spec ingestion, identity, the website snippet (docs/tracking.md)."""
