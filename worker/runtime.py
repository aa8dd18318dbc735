"""The per-process objects a worker needs, built once on first use (after any fork)."""

from __future__ import annotations

import threading

import httpx

from worker import metrics
from worker.db import session_scope
from worker.dispatch import Dispatcher
from worker.pipeline import Pipeline
from worker.provider.client import ProviderClient
from worker.reconciler import Reconciler
from worker.settings import get_settings
from worker.storage import store_from_settings

_lock = threading.Lock()
_pipeline: Pipeline | None = None
_reconciler: Reconciler | None = None
_dispatcher: Dispatcher | None = None


def get_pipeline() -> Pipeline:
    global _pipeline
    with _lock:
        if _pipeline is None:
            settings = get_settings()
            download = httpx.Client(
                timeout=httpx.Timeout(
                    settings.download_timeout_s, connect=settings.connect_timeout_s
                ),
                headers={"Accept-Encoding": "identity"},
                follow_redirects=True,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            )
            _pipeline = Pipeline(
                settings=settings,
                sessions=session_scope,
                provider=ProviderClient.from_settings(
                    settings, on_response=metrics.provider_response
                ),
                store=store_from_settings(settings),
                http=download,
            )
        return _pipeline


def get_reconciler() -> Reconciler:
    global _reconciler
    with _lock:
        if _reconciler is None:
            from worker.tasks import send_step

            _reconciler = Reconciler(
                settings=get_settings(), sessions=session_scope, send=send_step
            )
        return _reconciler


def get_dispatcher() -> Dispatcher:
    global _dispatcher
    with _lock:
        if _dispatcher is None:
            from worker.tasks import send_submit

            _dispatcher = Dispatcher(
                settings=get_settings(), sessions=session_scope, send=send_submit
            )
        return _dispatcher


def reset_pipeline() -> None:
    """Forget the cached pipeline, reconciler and dispatcher (tests, the demo after changing
    settings)."""
    global _pipeline, _reconciler, _dispatcher
    with _lock:
        if _pipeline is not None:
            _pipeline.close()
        _pipeline = None
        _reconciler = None
        _dispatcher = None
