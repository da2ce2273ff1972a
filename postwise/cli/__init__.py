"""The ``postwise`` command: one module per command group, assembled in ``main.py``."""
