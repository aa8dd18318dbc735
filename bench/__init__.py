"""Benchmarks: ``make bench`` (``python -m bench run``), each figure a ratio to a baseline
measured in the same run; never asserted in tests. See docs/benchmarks.md."""
