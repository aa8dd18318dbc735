"""Tracing off costs one check; on, a step's span starts from the job's stored context."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from worker.broker import tracing as broker_tracing
from worker.telemetry import tracing

STORED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_tracing_is_wanted_only_with_an_endpoint(environ: dict[str, str], wanted: bool) -> None:
    assert tracing.wanted(environ) is wanted


def test_off_nothing_is_set_up_and_spans_are_the_shared_no_op(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a process without an OTLP endpoint
    for name in tracing.ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert not tracing.enabled()
    # Then set-up does nothing, and every traced place gets the same no-op context
    assert tracing.setup("imagegen-test") is False and not tracing.enabled()
    assert tracing.job_span("x", job_id=uuid.uuid4(), traceparent=None) is tracing._OFF
    assert tracing.enqueue_span() is tracing._OFF
    assert broker_tracing.job_step("submit", str(uuid.uuid4())) is broker_tracing._OFF
    assert broker_tracing.webhook_step(str(uuid.uuid4())) is broker_tracing._OFF


def test_a_step_starts_from_the_stored_context() -> None:
    parent = tracing._parent(uuid.uuid4(), STORED)
    context = trace.get_current_span(parent).get_span_context()
    assert format(context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(context.span_id, "016x") == "b7ad6b7169203331"


def test_without_a_stored_context_the_trace_id_is_the_job_id() -> None:
    job_id = uuid.uuid4()
    context = trace.get_current_span(tracing._parent(job_id, None)).get_span_context()
    assert context.trace_id == job_id.int and context.is_remote and context.span_id


def test_a_message_already_in_the_jobs_trace_nests_under_its_span() -> None:
    # Given a task running in the span its message's headers carried, in the job's trace
    job_id = uuid.uuid4()
    carried = SpanContext(
        job_id.int, 0x1234, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    with trace.use_span(NonRecordingSpan(carried)):
        # Then the step's span is a child of the current one (no explicit parent)
        assert tracing._parent(job_id, None) is None
