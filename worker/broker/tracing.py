"""Traces on the Celery side: publish and run spans, and each task's span in its job's trace.

Celery's instrumentation carries the sender's context in the message headers (a re-queued poll
continues its trace that way). The job's own context comes from its row
(``worker.telemetry.tracing``), read only when this process traces: a task sent by the beat
(a dispatch cycle, a reconciler re-drive) still lands in the trace of the job it advances.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from opentelemetry.instrumentation.celery import CeleryInstrumentor

from worker.db.engine import session_scope
from worker.store import jobs as job_store
from worker.telemetry import tracing

_OFF: AbstractContextManager[None] = nullcontext()


def setup(service: str) -> bool:
    """:func:`worker.telemetry.tracing.setup`, and Celery's publish and run spans."""
    if tracing.setup(service):
        instrument_celery()
    return tracing.enabled()


def instrument_celery() -> None:
    if not CeleryInstrumentor().is_instrumented_by_opentelemetry:
        CeleryInstrumentor().instrument()


def uninstrument_celery() -> None:
    if CeleryInstrumentor().is_instrumented_by_opentelemetry:
        CeleryInstrumentor().uninstrument()


def job_step(step: str, job_id: str) -> AbstractContextManager[None]:
    """The span of a job's step (``imagegen.submit``, ``imagegen.poll`` ...)."""
    if not tracing.enabled():
        return _OFF
    return _job_step(step, uuid.UUID(job_id))


@contextmanager
def _job_step(step: str, job_id: uuid.UUID) -> Iterator[None]:
    with session_scope() as session:
        traceparent = job_store.traceparents(session, [job_id]).get(job_id)
    with tracing.job_span(f"imagegen.{step}", job_id=job_id, traceparent=traceparent):
        yield


def webhook_step(delivery_id: str) -> AbstractContextManager[None]:
    """The span of a webhook attempt, in the trace of the job it reports on."""
    if not tracing.enabled():
        return _OFF
    return _webhook_step(uuid.UUID(delivery_id))


@contextmanager
def _webhook_step(delivery_id: uuid.UUID) -> Iterator[None]:
    with session_scope() as session:
        job_id, traceparent = job_store.delivery_traceparent(session, delivery_id)
    if job_id is None:  # a batch's event: its own trace
        with tracing.tracer().start_as_current_span(
            "imagegen.webhook", attributes={"imagegen.delivery_id": str(delivery_id)}
        ):
            yield
        return
    with tracing.job_span(
        "imagegen.webhook",
        job_id=job_id,
        traceparent=traceparent,
        **{"imagegen.delivery_id": str(delivery_id)},
    ):
        yield
