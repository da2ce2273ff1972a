"""Tenants and the keys that act for them."""
