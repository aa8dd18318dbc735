"""Traces (OpenTelemetry): one trace per job, from the enqueue to the webhook.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set.
Off, nothing of the SDK is imported or set up (:func:`setup` loads ``worker.telemetry.otel``
only when tracing is wanted) and each traced place pays one check of a module flag: the
spans below return a shared ``nullcontext`` and the callers skip the row reads they would need.
On, the API, the workers and the command line export spans over OTLP/HTTP, configured by the
standard ``OTEL_*`` variables (service name, sampler, headers).

How a job's steps find one trace: the enqueue runs inside an ``imagegen.enqueue`` span (a
child of the API request's span when it came over HTTP) whose W3C ``traceparent`` is stored in
the job's row. Every later step (the dispatcher's send, the submit, each poll, the transfer,
the webhook) starts its span from that stored context, whoever sent its message (the API, a
worker's re-queue, the beat's dispatcher or reconciler), so a poll re-queued a hundred times,
or a job re-driven after a crash, stays in its trace. A job enqueued by a process that does
not trace (and every job of a batch, whose request would otherwise hold 100,000 jobs in one
trace) has no stored context: its trace id is then its job id, so the steps still share one
trace and an operator finds it from the id.
"""

from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

#: The variables whose presence turns tracing on (the OTLP exporter reads them itself).
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

_state = {"enabled": False}
_OFF: AbstractContextManager[None] = nullcontext()
_W3C = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("imagegen")  # a proxy: it uses the provider installed later


def enabled() -> bool:
    """Whether this process traces (the one check traced places make)."""
    return _state["enabled"]


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """An OTLP endpoint is configured, and the SDK is not switched off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def setup(service: str) -> bool:
    """Trace this process as ``service`` (unless ``OTEL_SERVICE_NAME`` names it) when an OTLP
    endpoint is configured: the SDK with a batching OTLP/HTTP exporter, and the SQLAlchemy,
    httpx and botocore instrumentations. Returns whether tracing is on; later calls do nothing.
    """
    if enabled() or not wanted():
        return enabled()
    sdk = importlib.import_module("worker.telemetry.otel")  # only a tracing process loads it
    install(sdk.otlp_provider(service), sdk)
    return True


def install(provider: Any, sdk: Any = None) -> None:
    """Make ``provider`` (an SDK ``TracerProvider``) this process's, instrument the libraries
    and turn the job spans on (tests pass one with an in-memory exporter)."""
    sdk = sdk or importlib.import_module("worker.telemetry.otel")
    trace.set_tracer_provider(provider)
    sdk.instrument_libraries()
    _state["enabled"] = True


def disable() -> None:
    """Turn the job spans and the library instrumentations off again (tests)."""
    if enabled():
        importlib.import_module("worker.telemetry.otel").uninstrument_libraries()
    _state["enabled"] = False


# --- a job's spans ------------------------------------------------------------------------------


@contextmanager
def _enqueue_span(attributes: dict[str, Any]) -> Iterator[str | None]:
    with _tracer.start_as_current_span("imagegen.enqueue", attributes=attributes):
        carrier: dict[str, str] = {}
        _W3C.inject(carrier)
        yield carrier.get("traceparent")


def enqueue_span(**attributes: Any) -> AbstractContextManager[str | None]:
    """The span of an enqueue; it yields the ``traceparent`` to store with the job (None when
    not tracing)."""
    if not enabled():
        return _OFF
    return _enqueue_span(attributes)


def job_span(
    name: str, *, job_id: uuid.UUID | str, traceparent: str | None, **attributes: Any
) -> AbstractContextManager[object]:
    """A span of one of a job's steps, in the job's trace (see the module's docstring)."""
    if not enabled():
        return _OFF
    return _tracer.start_as_current_span(
        name,
        context=_parent(uuid.UUID(str(job_id)), traceparent),
        attributes={"imagegen.job_id": str(job_id), **attributes},
    )


def tracer() -> trace.Tracer:
    """The project's tracer (spans other than a job's: a batch's webhook)."""
    return _tracer


def tag(**attributes: Any) -> None:
    """Add attributes to the current span (nothing when not tracing)."""
    if enabled():
        trace.get_current_span().set_attributes(attributes)


def _parent(job_id: uuid.UUID, traceparent: str | None) -> otel_context.Context | None:
    """The context a step's span starts from: the current one when it already is in the job's
    trace (a message whose headers carried it), else the stored one, else the job-id trace."""
    stored = trace.get_current_span(_W3C.extract({"traceparent": traceparent or ""}))
    wanted_id = stored.get_span_context().trace_id if traceparent else job_id.int
    current = trace.get_current_span().get_span_context()
    if current.is_valid and current.trace_id == wanted_id:
        return None
    if traceparent and stored.get_span_context().is_valid:
        return trace.set_span_in_context(stored)
    return trace.set_span_in_context(NonRecordingSpan(job_trace_root(job_id)))


def job_trace_root(job_id: uuid.UUID) -> SpanContext:
    """The remote parent of the steps of a job without a stored context: trace id = job id."""
    span_id = (job_id.int & 0xFFFF_FFFF_FFFF_FFFF) or 1
    return SpanContext(
        trace_id=job_id.int,
        span_id=span_id,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
