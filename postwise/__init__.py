"""Postwise: a self-hosted B2B email platform. See docs/architecture.md for the layout."""

__version__ = "0.1.0"
