"""Campaigns: one-off sends to an audience with schedule, pace, guardrails, A/B/n and
attribution (docs/campaigns.md)."""
