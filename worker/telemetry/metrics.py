"""Prometheus metrics: what every process counts, and the queue as the database sees it.

Two kinds, exposed differently:

- **Process counters** (transitions, provider calls, transfers) live in
  the process that did the work. Each worker serves them on ``IMAGEGEN_METRICS_PORT``; the API
  serves its own at ``/metrics``. Prometheus sums them across instances.
- **Queue gauges** (jobs by active state, queue depth, oldest queued age, and the fleet's
  pause, breaker, cool-down and current submit rate) are facts about the
  table, read at scrape time by :class:`QueueCollector`. Only the API registers it, so N
  workers do not run N copies of the same queries; it caches for a few seconds.

Transitions are counted when the outermost transaction that made them commits, never for a
rolled-back move (``worker.db.aftercommit``): the counter agrees with the job event log.

Label values are bounded: statuses, endpoints, HTTP status codes, priorities. Never job ids.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client import start_http_server as _start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session

from worker.db.aftercommit import call_after_commit

log = logging.getLogger("imagegen.metrics")

TRANSITIONS = Counter(
    "imagegen_job_transitions", "Committed job status changes.", ["from_status", "to_status"]
)
PROVIDER_SECONDS = Histogram(
    "imagegen_provider_request_duration_seconds",
    "Provider call latency, transport included.",
    ["endpoint"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60),
)
PROVIDER_RESPONSES = Counter(
    "imagegen_provider_responses",
    "Provider calls by endpoint and HTTP status ('transport_error' when no answer came back).",
    ["endpoint", "code"],
)
RATE_LIMITED = Counter(
    "imagegen_provider_rate_limited", "Provider answers with HTTP 429.", ["endpoint"]
)
POLLS_PER_JOB = Histogram(
    "imagegen_job_polls",
    "Polls a job needed, observed when it leaves running.",
    buckets=(1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377),
)
TRANSFER_BYTES = Counter("imagegen_transfer_bytes", "Bytes of output images stored.")
TRANSFER_SECONDS = Histogram(
    "imagegen_transfer_duration_seconds",
    "Time to stream one output image into storage.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
DISPATCHED = Counter(
    "imagegen_dispatched", "Submit messages the dispatcher sent, by priority.", ["priority"]
)
DEFERRED = Counter(
    "imagegen_submit_deferred",
    "Claims the fleet's limits sent back to the queue, by reason "
    "(paused, breaker_open, probe_in_flight, cooldown, in_flight_limit, rate_limit).",
    ["reason"],
)
FLEET_EVENTS = Counter(
    "imagegen_fleet_events",
    "Fleet-wide limit events this process caused: paused, resumed, breaker_open, breaker_closed.",
    ["event"],
)
BREAKER_STATES = ("closed", "open", "half_open")
SPEND = Counter(
    "imagegen_spend",
    "Money (the account's currency, at IMAGEGEN_PRICES) of submissions the provider accepted "
    "(kind=charged) or may have accepted (kind=possible: ambiguous submits), by tenant.",
    ["tenant", "kind"],
)
SUBMITS_CHARGED = Counter(
    "imagegen_submits_charged",
    "Submissions counted as spend, by tenant and kind.",
    ["tenant", "kind"],
)
BUDGET_WARNINGS = Counter(
    "imagegen_budget_warnings",
    "Budgets that passed 80 % of their limit, by tenant and period (day, month, batch).",
    ["tenant", "period"],
)

# --- hooks the rest of the code calls --------------------------------------------------------


def transition(
    session: Session, source: str, target: str, *, polls: int | None = None, count: int = 1
) -> None:
    """Count ``source -> target`` (``count`` jobs at once) once ``session``'s outermost
    transaction commits.

    ``polls`` (the job's poll count) is observed when a job leaves ``running``.
    """
    call_after_commit(session, _count, str(source), str(target), polls, count)


def _count(source: str, target: str, polls: int | None, count: int = 1) -> None:
    TRANSITIONS.labels(source, target).inc(count)
    if polls is not None:
        POLLS_PER_JOB.observe(polls)


def provider_response(endpoint: str, status: int | None, seconds: float) -> None:
    """The provider client's ``on_response`` hook: latency, outcome, 429s."""
    PROVIDER_SECONDS.labels(endpoint).observe(seconds)
    PROVIDER_RESPONSES.labels(endpoint, _code_label(status)).inc()
    if status == 429:
        RATE_LIMITED.labels(endpoint).inc()


def _code_label(status: int | None) -> str:
    if status is None:
        return "transport_error"
    return str(status) if 100 <= status <= 599 else "other"


def transfer(nbytes: int, seconds: float) -> None:
    """One output image stored: its size and how long the copy took."""
    TRANSFER_BYTES.inc(nbytes)
    TRANSFER_SECONDS.observe(seconds)


def dispatched(interactive: int, batch: int) -> None:
    if interactive:
        DISPATCHED.labels("interactive").inc(interactive)
    if batch:
        DISPATCHED.labels("batch").inc(batch)


def deferred(reason: str) -> None:
    DEFERRED.labels(reason).inc()


def spent(session: Session, tenant: str, kind: str, micros: int) -> None:
    """Count a charge once ``session``'s transaction commits."""
    call_after_commit(session, _spent, tenant, kind, micros)


def _spent(tenant: str, kind: str, micros: int) -> None:
    SPEND.labels(tenant, kind).inc(micros / 1_000_000)
    SUBMITS_CHARGED.labels(tenant, kind).inc()


def budget_warning(session: Session, tenant: str, period: str) -> None:
    call_after_commit(session, BUDGET_WARNINGS.labels(tenant, period).inc)


def set_paused(paused: bool) -> None:
    """Count a pause or resume this process made (the state itself is a table fact)."""
    FLEET_EVENTS.labels("paused" if paused else "resumed").inc()


def set_breaker(state: str) -> None:
    """Count a breaker change this process saw: closed, open or half_open."""
    if state not in BREAKER_STATES:
        raise ValueError(f"unknown breaker state {state!r}")
    FLEET_EVENTS.labels(f"breaker_{state}").inc()


# --- the queue, read from the database at scrape time ----------------------------------------


@dataclass(frozen=True)
class QueueFacts:
    """What :class:`QueueCollector` publishes (built by ``service.operator.queue_facts``)."""

    active: dict[str, int]
    queued_by_priority: dict[str, int]
    queued_due: int
    oldest_queued_age_s: float
    #: The fleet's submission gate (None when it could not be read).
    paused: bool | None = None
    breaker: str | None = None
    cooldown_s: float = 0.0
    submit_rate: float | None = None
    max_in_flight: int | None = None


class QueueCollector(Collector):
    """Jobs by active state, queue depth and the oldest queued job's age, cached briefly."""

    def __init__(self, read: Callable[[], QueueFacts], *, ttl_s: float = 5.0) -> None:
        self._read = read
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cached: tuple[float, QueueFacts | None] = (float("-inf"), None)

    def collect(self) -> Iterator[Metric]:
        facts = self._facts()
        up = GaugeMetricFamily(
            "imagegen_queue_read_up", "1 if the last read of the job table for metrics worked."
        )
        up.add_metric([], 0 if facts is None else 1)
        yield up
        if facts is not None:
            yield from _families(facts)

    def forget(self) -> None:
        with self._lock:
            self._cached = (float("-inf"), None)

    def _facts(self) -> QueueFacts | None:
        with self._lock:  # one query per TTL, however many scrapers
            at, facts = self._cached
            if time.monotonic() - at >= self._ttl_s:
                facts = self._read_safely()
                self._cached = (time.monotonic(), facts)
            return facts

    def _read_safely(self) -> QueueFacts | None:
        try:
            return self._read()
        except Exception as exc:  # a scrape must answer even when the database does not
            log.warning("queue_metrics_unavailable", extra={"error": type(exc).__name__})
            return None


def _families(facts: QueueFacts) -> Iterator[Metric]:
    jobs = GaugeMetricFamily(
        "imagegen_jobs",
        "Active jobs by status (finished jobs: see imagegen_job_transitions_total).",
        labels=["status"],
    )
    for status, count in facts.active.items():
        jobs.add_metric([status], count)
    depth = GaugeMetricFamily(
        "imagegen_queue_depth", "Queued jobs by priority.", labels=["priority"]
    )
    for priority, count in facts.queued_by_priority.items():
        depth.add_metric([priority], count)
    yield jobs
    yield depth
    yield GaugeMetricFamily(
        "imagegen_queue_due", "Queued jobs whose submit is due now.", value=facts.queued_due
    )
    yield GaugeMetricFamily(
        "imagegen_queue_oldest_age_seconds",
        "Age of the oldest queued job (0 when none).",
        value=facts.oldest_queued_age_s,
    )
    if facts.paused is not None:
        yield GaugeMetricFamily(
            "imagegen_submissions_paused",
            "1 while submissions are paused fleet-wide.",
            value=1 if facts.paused else 0,
        )
    if facts.breaker is not None:
        breaker = GaugeMetricFamily(
            "imagegen_breaker_state",
            "Circuit breaker in front of provider submissions (1 for the current state).",
            labels=["state"],
        )
        for state in BREAKER_STATES:
            breaker.add_metric([state], 1 if facts.breaker == state else 0)
        yield breaker
    yield GaugeMetricFamily(
        "imagegen_submit_cooldown_seconds",
        "Seconds left of the fleet's cool-down after a 429 (0: none).",
        value=facts.cooldown_s,
    )
    if facts.submit_rate is not None:
        yield GaugeMetricFamily(
            "imagegen_submit_rate",
            "Submissions per second the fleet may make now (adaptive; 0: unlimited).",
            value=facts.submit_rate,
        )
    if facts.max_in_flight is not None:
        yield GaugeMetricFamily(
            "imagegen_in_flight_limit",
            "Predictions the fleet may have in flight at the provider.",
            value=facts.max_in_flight,
        )


_lock = threading.Lock()  # registration and serving happen once per process
_collectors: dict[int, QueueCollector] = {}


def register_queue_collector(
    read: Callable[[], QueueFacts], registry: CollectorRegistry = REGISTRY
) -> None:
    """Add the queue gauges to ``registry`` (once; later calls do nothing)."""
    with _lock:
        if id(registry) not in _collectors:
            _collectors[id(registry)] = QueueCollector(read)
            registry.register(_collectors[id(registry)])


def refresh_queue_metrics() -> None:
    """Make the next scrape read the table again (tests; after an operator action)."""
    for collector in list(_collectors.values()):
        collector.forget()


# --- serving ------------------------------------------------------------------------------------

_served_port: int | None = None


def serve(port: int, addr: str = "127.0.0.1") -> int | None:
    """Serve this process's metrics on ``addr:port`` (port 0: off; unauthenticated, so loopback
    unless ``IMAGEGEN_METRICS_ADDR`` says otherwise). Once per process; later calls and a port
    in use only log: metrics must never stop a worker."""
    global _served_port
    with _lock:
        if port == 0 or _served_port is not None:
            return _served_port
        try:
            _start_http_server(port, addr=addr)
        except OSError as exc:
            log.warning("metrics_port_unavailable", extra={"port": port, "error": str(exc)})
            return None
        _served_port = port
        log.info("metrics_serving", extra={"addr": addr, "port": port})
        return port
