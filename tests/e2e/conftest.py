"""What the end-to-end modules share."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import harness


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start a simulator of this test's own (account limits, latency); its URL."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> str:
        proc, url = harness.start_simulator(tmp_path / f"simulator-{len(procs)}.log", *args)
        procs.append(proc)
        return url

    yield start
    for proc in procs:
        harness.stop_process(proc)
