"""A small chaos run inside the suite (``make chaos`` runs the big one): workers SIGKILLed every
few seconds, Redis flushed once, and a hostile provider; nothing is lost or paid twice."""

from __future__ import annotations

import pytest

from tests.chaos import Options, run

pytestmark = pytest.mark.e2e


def test_chaos_keeps_every_promise(tmp_path, redis_url) -> None:
    # Given 40 jobs, two workers that keep being killed, a flushed broker and provider faults
    options = Options(jobs=40, workers=2, kill_every_s=4, deadline_s=90, timeout_s=300)
    # When the fleet drains them
    report = run(options, tmp_path)
    print("\n" + "\n".join(report.lines()))
    # Then every job ended in a named state, no unflagged duplicate, rows match objects
    assert report.lost == 0
    assert sum(report.by_state.values()) == 40
    assert report.unflagged_duplicates == 0
    assert report.image_rows == report.objects == report.by_state["succeeded"]
    assert report.mismatched_objects == 0
    assert report.kills >= 1  # a fast machine drains 40 jobs between few kills
