"""Traces: every step of a job lands in one trace (the SDK's in-memory exporter).

The API (uvicorn in a thread), a Celery worker (a thread of this process, so that its spans
reach the same exporter) and the dispatcher run here against real Postgres, Redis, S3 and the
simulator. Tracing is switched on for this module only, as ``OTEL_EXPORTER_OTLP_ENDPOINT``
would, and off again after it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from celery.contrib.testing.worker import start_worker
from imagegen_client import Client
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.producers import TOKEN, WebhookReceiver, configure, running_api
from tests.waiting import wait_for
from worker.broker import tracing as broker_tracing
from worker.broker.app import app as celery_app
from worker.core.settings import QUEUES
from worker.db.engine import reset_engine
from worker.service import batches
from worker.telemetry import tracing

pytestmark = pytest.mark.e2e

EXPORTER = InMemorySpanExporter()
STEPS = ("imagegen.submit", "imagegen.poll", "imagegen.transfer")


@pytest.fixture(scope="module")
def traced() -> Iterator[InMemorySpanExporter]:
    """This process traces into the in-memory exporter (a provider is set once per process)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    tracing.install(provider)
    broker_tracing.instrument_celery()
    yield EXPORTER
    broker_tracing.uninstrument_celery()
    tracing.disable()


@pytest.fixture
def worker(traced, configured, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A Celery worker in a thread of this process, on the test broker's queues."""
    configure(monkeypatch)
    reset_engine()  # built again through the instrumented create_engine
    EXPORTER.clear()
    with start_worker(
        celery_app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        queues=list(QUEUES),
        shutdown_timeout=30,
    ):
        yield


def test_a_job_enqueued_over_http_is_one_trace_from_request_to_webhook(worker) -> None:
    # Given the API and a webhook receiver
    with (
        WebhookReceiver() as receiver,
        running_api() as base_url,
        Client(base_url, TOKEN) as api,
    ):
        # When a job with a callback goes through
        job = api.jobs.create(f"traced {uuid.uuid4().hex}", callback_url=receiver.url)
        job_id = uuid.UUID(job.id)
        assert wait_for([job_id])[job_id]["status"] == "succeeded"
        receiver.take(1, timeout_s=30)
        spans = _spans_until(job_id, "imagegen.webhook")

    # Then one trace holds the request, the enqueue, every step and the webhook
    enqueue = _one(spans, "imagegen.enqueue", job_id)
    trace_id = enqueue.context.trace_id
    request = [s for s in spans if s.name == "POST /v1/jobs" and s.kind.name == "SERVER"]
    assert request and request[0].context.trace_id == trace_id
    assert enqueue.parent is not None and enqueue.parent.trace_id == trace_id
    for name in (*STEPS, "imagegen.webhook"):
        steps = _job_spans(spans, name, job_id)
        assert steps, f"no {name} span"
        assert {s.context.trace_id for s in steps} == {trace_id}, name
    # and what the steps did is in it too: SQL, the provider's HTTP calls, the S3 upload
    in_trace = [s for s in spans if s.context.trace_id == trace_id]
    kinds = {s.attributes.get("db.system") or s.attributes.get("rpc.system") for s in in_trace}
    assert {"postgresql", "aws-api"} <= kinds, kinds
    assert any(s.name.startswith(("GET", "POST")) and s.kind.name == "CLIENT" for s in in_trace)


def test_a_batch_job_sent_by_the_dispatcher_keeps_one_trace_named_by_its_id(worker) -> None:
    # Given a batch (its jobs wait for the dispatcher; none has a stored context)
    receipt = batches.enqueue_batch([{"prompt": f"traced batch {uuid.uuid4().hex}"}])
    job_id = receipt.job_ids[0]
    # When the dispatcher sends it and it goes through
    assert wait_for([job_id])[job_id]["status"] == "succeeded"
    spans = _spans_until(job_id, "imagegen.transfer")
    # Then the dispatcher's send and every step share one trace, whose id is the job's
    for name in ("imagegen.dispatch", *STEPS):
        steps = _job_spans(spans, name, job_id)
        assert steps, f"no {name} span"
        assert {s.context.trace_id for s in steps} == {job_id.int}, name


def _spans_until(job_id: uuid.UUID, name: str, timeout_s: float = 30) -> list[ReadableSpan]:
    """The finished spans, once one named ``name`` of the job has ended."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        spans = list(EXPORTER.get_finished_spans())
        if _job_spans(spans, name, job_id):
            return spans
        time.sleep(0.2)
    pytest.fail(f"no {name} span of {job_id} within {timeout_s} s")


def _job_spans(spans: list[ReadableSpan], name: str, job_id: uuid.UUID) -> list[ReadableSpan]:
    return [
        s for s in spans if s.name == name and s.attributes.get("imagegen.job_id") == str(job_id)
    ]


def _one(spans: list[ReadableSpan], name: str, job_id: uuid.UUID) -> ReadableSpan:
    found = _job_spans(spans, name, job_id)
    assert len(found) == 1, (name, len(found))
    return found[0]
