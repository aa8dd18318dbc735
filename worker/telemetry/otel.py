"""The OpenTelemetry SDK, for a process that traces (``worker.telemetry.tracing.setup`` loads
this module only then: a process that does not trace never imports the SDK).

The exporter is OTLP over HTTP (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``..._HEADERS``, ...) behind a
batching processor: spans leave in the background, and a collector that is down costs dropped
spans, never a slower step. The sampler is the SDK's, from ``OTEL_TRACES_SAMPLER`` (parent-based
always-on by default). The libraries every step goes through are instrumented here; Celery's
and FastAPI's instrumentations belong to ``worker.broker`` and ``api``.
"""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

#: Instrumented for every traced process: the database, HTTP (provider, downloads, webhooks)
#: and the object store.
INSTRUMENTORS = (SQLAlchemyInstrumentor, HTTPXClientInstrumentor, BotocoreInstrumentor)


def otlp_provider(service: str) -> TracerProvider:
    """A provider exporting to the configured OTLP endpoint; ``OTEL_SERVICE_NAME`` and
    ``OTEL_RESOURCE_ATTRIBUTES`` win over ``service``."""
    resource = Resource.create()  # the SDK's defaults and the OTEL_* variables
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def instrument_libraries() -> None:
    """SQLAlchemy (engines created from now on), httpx and botocore clients.

    The dependency check is skipped: SQLAlchemy's instrumentation declares ``< 2.1`` while it
    works on 2.1 through the same engine events (``tests/e2e/test_tracing_e2e.py`` checks its
    spans)."""
    for instrumentor in INSTRUMENTORS:
        if not instrumentor().is_instrumented_by_opentelemetry:
            instrumentor().instrument(skip_dep_check=True)


def uninstrument_libraries() -> None:
    for instrumentor in INSTRUMENTORS:
        if instrumentor().is_instrumented_by_opentelemetry:
            instrumentor().uninstrument()
