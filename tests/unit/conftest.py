"""Unit tests run without servers: what the code sends goes to the recording stand-in, never to
a broker (without it, sends would land in the embedded broker's folder in the checkout)."""

from __future__ import annotations

import pytest

from tests.stand_ins import RecordingPorts


@pytest.fixture(autouse=True)
def wired(recorded: RecordingPorts) -> RecordingPorts:
    """Replaces the suite's Celery wiring (``tests/conftest.py``) for unit tests."""
    return recorded
