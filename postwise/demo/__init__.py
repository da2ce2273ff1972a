"""Demo data: a deterministic, realistic-looking B2B audience with lists and history.

``generator`` builds it in memory from a seed (no database), ``loader`` writes it into a
new workspace through the domain actions, ``data`` holds the word lists it draws on.
"""
