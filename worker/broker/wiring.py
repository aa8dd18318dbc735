"""The composition root: the per-process objects a worker needs, built from the settings once
on first use (after any fork), with their real edges (the database, the provider, the object
store, HTTP clients, the ports).

:func:`reset` forgets all of it, and the settings and engine they were built from, when the
environment changed (tests, the demo).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from worker.blobs.copier import output_client
from worker.blobs.storage import probe_write, store_from_settings
from worker.broker.app import reconfigure
from worker.core import ports
from worker.core.ports import Step
from worker.core.settings import get_settings, reset_settings
from worker.db.engine import reset_engine, session_scope
from worker.engine.dispatcher import Dispatcher
from worker.engine.pipeline import Pipeline
from worker.engine.reconciler import Reconciler
from worker.engine.webhook_sender import WebhookSender
from worker.provider.client import ProviderClient
from worker.telemetry import metrics

_lock = threading.RLock()
#: What this process built, by name: built once, on first use (after any fork).
_built: dict[str, Any] = {}
T = TypeVar("T")


def _once(name: str, build: Callable[[], T]) -> T:
    with _lock:
        if name not in _built:
            _built[name] = build()
        built: T = _built[name]
        return built


def _forget(*names: str) -> None:
    """Drop what was built under ``names``, closing the HTTP connections it holds."""
    with _lock:
        for name in names:
            close = getattr(_built.pop(name, None), "close", None)
            if close is not None:
                close()


def _send_step(step: Step, job_id: uuid.UUID) -> None:
    ports.current().send_step(step, job_id)


def _send_submit(job_id: uuid.UUID, countdown_s: float = 0.0) -> None:
    """The dispatcher's message: submit this job (when its token will be there)."""
    ports.current().send_step("submit", job_id, countdown_s=countdown_s)


def get_pipeline() -> Pipeline:
    return _once("pipeline", _pipeline)


def _pipeline() -> Pipeline:
    settings = get_settings()
    return Pipeline(
        settings=settings,
        sessions=session_scope,
        provider=ProviderClient.from_settings(settings, on_response=metrics.provider_response),
        store=store_from_settings(settings),
        http=output_client(settings),
    )


def get_reconciler() -> Reconciler:
    return _once(
        "reconciler",
        lambda: Reconciler(
            settings=get_settings(),
            sessions=session_scope,
            send=_send_step,
            probe_storage=lambda: probe_write(store_from_settings(get_settings())),
        ),
    )


def get_dispatcher() -> Dispatcher:
    return _once(
        "dispatcher",
        lambda: Dispatcher(settings=get_settings(), sessions=session_scope, send=_send_submit),
    )


def get_sender() -> WebhookSender:
    """The process's webhook sender."""
    return _once("sender", _sender)


def _sender() -> WebhookSender:
    settings = get_settings()
    return WebhookSender(
        settings=settings,
        sessions=session_scope,
        store=store_from_settings(settings),
    )


def reset_pipeline() -> None:
    """Forget the cached pipeline, reconciler and dispatcher (tests, the demo after changing
    settings)."""
    _forget("pipeline", "reconciler", "dispatcher")


def reset_sender() -> None:
    _forget("sender")


def forget() -> None:
    """Drop what was built from the settings: the settings themselves, the database engine, the
    pipeline, reconciler and dispatcher (each is built again on its next use)."""
    reset_settings()
    reset_engine()
    reset_pipeline()


def reset() -> None:
    """Build everything anew from the current environment: :func:`forget`, and the Celery
    configuration applied again (tests, the demo)."""
    forget()
    reconfigure()
