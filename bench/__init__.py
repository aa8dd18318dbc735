"""Benchmarks: measured by hand (``python -m bench.<name>``), never asserted in tests."""
