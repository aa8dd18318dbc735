"""The HTTP API for other services: ``create_app()`` builds it (``imagegen api`` serves it).

Routes under ``/v1`` need a bearer token; ``/healthz``, ``/readyz`` and ``/metrics`` (from
``api.routes.ops``) do not. The web dashboard (``api.dashboard``) is under
``/dashboard``, behind a sign-in with the same tokens. OpenAPI at ``/openapi.json``,
interactive docs at ``/docs`` (``api.docs``: no CDN needed).
Route handlers are plain ``def`` (or hand blocking work to the thread pool): the database and
the object store are called synchronously and must never block the event loop.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from api import docs, errors
from api.access_log import AccessLog
from api.body_limit import BodyLimit
from api.dashboard import site
from api.routes import batches as batch_routes
from api.routes import fleet as fleet_routes
from api.routes import jobs as job_routes
from api.routes import ops
from api.routes import spend as spend_routes
from api.routes import webhooks as webhook_routes
from api.schemas import BatchCreate, BatchLine
from worker.blobs.storage import ObjectStore, store_from_settings
from worker.broker import tracing as broker_tracing
from worker.broker.tasks import install_ports
from worker.core.request import MAX_BODY_BYTES
from worker.core.settings import get_settings

DESCRIPTION = """Enqueue text-to-image jobs (GPTProto viduq2) one by one or in batches of up
to 100,000, follow them, and fetch the stored images through presigned links.

Every `/v1` call needs `Authorization: Bearer <token>`. Errors are JSON:
`{"code", "message", "errors": [{"field", "rule", "line"?}]}`; invalid input is 422 and writes
nothing."""
#: Bodies of other routes are small; a single job may carry up to 20 MB of reference images.
_SMALL_BODY = 1024 * 1024
#: Probes and scrapes, not worth a trace each.
UNTRACED = "/healthz,/readyz,/metrics"


def create_app() -> FastAPI:
    install_ports()  # enqueues, cancels and retries nudge the workers through Celery
    app = FastAPI(
        title="imagegen-queue",
        version="1",
        description=DESCRIPTION,
        docs_url=None,  # api.docs serves it from local assets
        redoc_url=None,  # ReDoc would need a CDN
    )
    errors.install(app)
    app.add_middleware(BodyLimit, limit_for=_body_limit)
    app.add_middleware(AccessLog)  # outermost: sees every answer, errors and limits included
    if broker_tracing.setup("imagegen-api"):  # only with OTEL_EXPORTER_OTLP_ENDPOINT
        FastAPIInstrumentor.instrument_app(app, excluded_urls=UNTRACED)
    app.include_router(job_routes.router)
    app.include_router(batch_routes.router)
    app.include_router(fleet_routes.router)
    app.include_router(webhook_routes.router)
    app.include_router(spend_routes.router)
    app.include_router(ops.router)
    site.install(app)
    docs.install(app)
    app.state.links = _Links()
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _body_limit(path: str) -> int:
    if path.startswith("/v1/batches"):
        return get_settings().api_max_batch_bytes
    if path.startswith("/v1/jobs"):
        return 2 * MAX_BODY_BYTES  # room for JSON escaping; the 20 MB rule is checked after
    return _SMALL_BODY


class _Links:
    """The object store that presigns download links, built on first use."""

    def __init__(self) -> None:
        self._store: ObjectStore | None = None
        self._lock = threading.Lock()

    def __call__(self) -> ObjectStore:
        with self._lock:
            if self._store is None:
                self._store = store_from_settings(get_settings())
            return self._store


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, plus the batch body models (the route reads its body itself)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (BatchCreate, BatchLine):
        found = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(found.pop("$defs", {}))
        components[model.__name__] = found
    app.openapi_schema = schema
    return schema
