"""Operational endpoints: ``/healthz``, ``/readyz`` and ``/metrics`` (no authentication:
expose them to the orchestrator and Prometheus, not to the internet).

- ``/healthz``: the process is up and serving (a liveness probe; touches nothing else).
- ``/readyz``: the database, the broker and the object store answer, each within
  ``IMAGEGEN_READY_TIMEOUT_S``; 503 with the failing checks named otherwise.
- ``/metrics``: Prometheus text: this process's counters plus the queue gauges read from the
  job table (active jobs by state, queue depth by priority, oldest queued age).

The handlers are plain ``def`` on purpose: FastAPI runs them in its thread pool, so a slow
database never blocks the event loop.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from worker.core.settings import get_settings
from worker.service import health
from worker.service import operator as admin
from worker.telemetry import metrics

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Database, broker and storage are reachable",
    responses={503: {"description": "A dependency is unreachable (see checks)"}},
)
def readyz() -> JSONResponse:
    report = health.readiness(get_settings())
    return JSONResponse(report.as_dict(), status_code=200 if report.ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def prometheus_metrics() -> Response:
    metrics.register_queue_collector(admin.queue_facts)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
