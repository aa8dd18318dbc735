"""Loaded by every Python process started with ``bench/hooks`` on its ``PYTHONPATH`` (the
benchmarks' workers and beat): installs :mod:`bench.probe` when the benchmark asked for it."""

import os

if os.environ.get("IMAGEGEN_BENCH_PROBE_DIR"):
    from pathlib import Path

    from bench.probe import install

    install(Path(os.environ["IMAGEGEN_BENCH_PROBE_DIR"]))
