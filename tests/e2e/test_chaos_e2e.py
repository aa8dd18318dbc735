"""A small chaos run inside the suite (``make chaos`` runs the big one): jobs enqueued through
the run while workers are SIGKILLed every few seconds, the S3 server is unreachable, the broker
is stopped (and comes back empty), the provider answers every poll 5xx, Redis is flushed, and
the simulator injects its faults; checked at rest, nothing is lost, failed by an outage, paid
twice or generated and not stored."""

from __future__ import annotations

import pytest

from tests.chaos import Options, run

pytestmark = pytest.mark.e2e


def test_chaos_keeps_every_promise(tmp_path) -> None:
    # Given 40 jobs fed over 30 s, two workers that keep being killed, and one outage of each
    # kind (S3, the broker, the provider's polls) on top of the provider's faults
    options = Options(
        jobs=40,
        workers=2,
        kill_every_s=4,
        feed_s=30,
        s3_outage_s=8,
        redis_outage_s=8,
        poll_5xx_s=6,
        deadline_s=90,
        timeout_s=400,
    )
    # When the fleet drains them
    report = run(options, tmp_path)
    print("\n" + "\n".join(report.lines()))
    # Then every job ended in a named state, none because of an outage
    assert report.lost == 0
    assert sum(report.by_state.values()) == report.jobs == 40
    assert report.failed_by_outage == 0, report.examples
    # nothing paid twice without a flag, nothing generated and then lost
    assert report.unflagged_duplicates == 0, report.examples
    assert report.generated_not_stored == 0, report.examples
    # objects and image rows match one to one
    assert report.objects_without_rows == report.rows_without_objects == 0
    assert report.image_rows == report.objects == report.by_state["succeeded"]
    assert report.mismatched_objects == 0
    # producers kept enqueueing through the outages, and every disruption happened
    assert not report.enqueue_errors
    happened = "; ".join(report.events)
    for disruption in ("S3 unreachable", "Redis stopped", "polls answered 5xx", "Redis flushed"):
        assert disruption in happened
    assert report.kills >= 1
    # and no worker stopped by itself with exit code 0 (a preflight refusing to start while
    # the broker is down exits 1, and the fleet restarts it as a supervisor would)
    assert report.silent_exits == 0
