"""The metric hooks in-process: label values stay bounded, the queue collector caches and
survives a database outage. (Counting transitions only on commit needs a real database:
tests/integration/test_metrics_http.py.)"""

from __future__ import annotations

import itertools

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from worker.telemetry import metrics


def value(
    name: str, labels: dict[str, str] | None = None, registry: CollectorRegistry | None = None
) -> float:
    from prometheus_client import REGISTRY

    found = (registry or REGISTRY).get_sample_value(name, labels or {})
    return found or 0.0


def test_provider_responses_count_latency_outcome_and_429s() -> None:
    before = {
        code: value("imagegen_provider_responses_total", {"endpoint": "submit", "code": code})
        for code in ("200", "429", "transport_error", "other")
    }
    limited = value("imagegen_provider_rate_limited_total", {"endpoint": "submit"})
    seen = value("imagegen_provider_request_duration_seconds_count", {"endpoint": "submit"})
    for status in (200, 429, None, 999):
        metrics.provider_response("submit", status, 0.2)
    for code in before:
        after = value("imagegen_provider_responses_total", {"endpoint": "submit", "code": code})
        assert after == before[code] + 1
    assert value("imagegen_provider_rate_limited_total", {"endpoint": "submit"}) == limited + 1
    assert (
        value("imagegen_provider_request_duration_seconds_count", {"endpoint": "submit"})
        == seen + 4
    )


def test_transfers_add_bytes_and_durations() -> None:
    before = value("imagegen_transfer_bytes_total")
    count = value("imagegen_transfer_duration_seconds_count")
    metrics.transfer(1234, 0.5)
    assert value("imagegen_transfer_bytes_total") == before + 1234
    assert value("imagegen_transfer_duration_seconds_count") == count + 1


def test_pause_and_breaker_changes_are_counted() -> None:
    before = value("imagegen_fleet_events_total", {"event": "paused"})
    opened = value("imagegen_fleet_events_total", {"event": "breaker_open"})
    metrics.set_paused(True)
    metrics.set_breaker("open")
    assert value("imagegen_fleet_events_total", {"event": "paused"}) == before + 1
    assert value("imagegen_fleet_events_total", {"event": "breaker_open"}) == opened + 1
    with pytest.raises(ValueError):
        metrics.set_breaker("ajar")


FACTS = metrics.QueueFacts(
    active={"queued": 3, "submitting": 0, "running": 2, "transferring": 1},
    queued_by_priority={"interactive": 1, "batch": 2},
    queued_due=2,
    oldest_queued_age_s=42.5,
    paused=True,
    breaker="half_open",
    cooldown_s=3.5,
    submit_rate=1.5,
    max_in_flight=40,
)


def scrape(registry: CollectorRegistry) -> dict[str, float]:
    text = generate_latest(registry).decode()
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_queue_collector_publishes_the_facts_and_caches_them() -> None:
    calls = itertools.count(1)
    registry = CollectorRegistry()
    registry.register(metrics.QueueCollector(lambda: (next(calls), FACTS)[1], ttl_s=60))
    first, second = scrape(registry), scrape(registry)
    assert first == second and next(calls) == 2  # one read for two scrapes
    assert first["imagegen_jobs[('status', 'queued')]"] == 3
    assert first["imagegen_jobs[('status', 'running')]"] == 2
    assert first["imagegen_queue_depth[('priority', 'batch')]"] == 2
    assert first["imagegen_queue_due[]"] == 2
    assert first["imagegen_queue_oldest_age_seconds[]"] == 42.5
    assert first["imagegen_queue_read_up[]"] == 1
    assert first["imagegen_submissions_paused[]"] == 1
    assert first["imagegen_breaker_state[('state', 'half_open')]"] == 1
    assert first["imagegen_breaker_state[('state', 'closed')]"] == 0
    assert first["imagegen_submit_cooldown_seconds[]"] == 3.5
    assert first["imagegen_submit_rate[]"] == 1.5
    assert first["imagegen_in_flight_limit[]"] == 40


def test_queue_collector_answers_when_the_database_does_not() -> None:
    def broken() -> metrics.QueueFacts:
        raise ConnectionError("database down")

    registry = CollectorRegistry()
    registry.register(metrics.QueueCollector(broken, ttl_s=0))
    samples = scrape(registry)
    assert samples == {"imagegen_queue_read_up[]": 0}


def test_serving_twice_or_on_a_taken_port_never_raises() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert metrics.serve(0) is None  # 0: off
        if metrics._served_port is None:  # not served yet in this test process
            assert metrics.serve(port, addr="127.0.0.1") is None  # in use: logged, no error
