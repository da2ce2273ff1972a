"""Bounces and complaints: parsing, classification, intake, suppression (docs/bounces.md)."""
