"""Throughput benchmarks, run with ``make bench``; see ``benchmarks/__main__.py``."""
