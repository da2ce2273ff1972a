"""Vocabulary shared by every capability: errors, settings, clock, logging."""
