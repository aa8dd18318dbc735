"""Thin Celery tasks, and the Celery implementation of the ports that send them.

Each task runs one step (a pipeline step, a dispatch cycle, a reconciler pass, a webhook
attempt, a prune) and schedules what the step says comes next. A database error (Postgres
restarting) retries the task shortly; whatever is lost meanwhile is found again from the rows.

:class:`CeleryPorts` is how the rest of the code sends these tasks (``worker.core.ports``): the
messages it publishes are the ones the tasks below re-queue themselves with, so a rolling
deploy sees the same names and bodies whoever sent them. ``install_ports`` wires it into the
process; the command line, the HTTP API, ``worker.producer`` and every worker (``worker_init``)
call it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from celery import Task
from celery.signals import worker_init
from sqlalchemy.exc import DBAPIError, OperationalError

from worker.broker import tracing
from worker.broker.app import app
from worker.broker.tracing import job_step, webhook_step
from worker.broker.wiring import get_dispatcher, get_pipeline, get_reconciler, get_sender
from worker.core import ports
from worker.core.ports import Ports, Step
from worker.core.settings import get_settings
from worker.db.engine import get_engine
from worker.engine.pipeline import Next
from worker.service import retention
from worker.store import outbox

log = logging.getLogger("imagegen.dispatch")
maintenance_log = logging.getLogger("imagegen.maintenance")

_DB_RETRY: dict[str, Any] = {
    "autoretry_for": (OperationalError, DBAPIError),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "max_retries": 20,
    "acks_late": True,
}


# --- the job's steps ----------------------------------------------------------------------------


@app.task(name="imagegen.submit", **_DB_RETRY)
def submit(job_id: str) -> None:
    with job_step("submit", job_id):
        schedule(job_id, get_pipeline().submit(uuid.UUID(job_id)))


@app.task(name="imagegen.poll", bind=True, **_DB_RETRY)
def poll(self: Task, job_id: str) -> None:
    pipeline = get_pipeline()
    with job_step("poll", job_id):
        if _redelivered(self) and not pipeline.redelivered_poll(uuid.UUID(job_id)):
            return
        schedule(job_id, pipeline.poll(uuid.UUID(job_id)))


@app.task(name="imagegen.transfer", **_DB_RETRY)
def transfer(job_id: str) -> None:
    with job_step("transfer", job_id):
        schedule(job_id, get_pipeline().transfer(uuid.UUID(job_id)))


@app.task(name="imagegen.discard", **_DB_RETRY)
def discard(job_id: str) -> None:
    with job_step("discard", job_id):
        get_pipeline().discard(uuid.UUID(job_id))


STEPS: dict[str, Task] = {"submit": submit, "poll": poll, "transfer": transfer, "discard": discard}


def _redelivered(task: Task) -> bool:
    return bool((task.request.delivery_info or {}).get("redelivered"))


def schedule(job_id: str, step: Next | None) -> None:
    """Send the next step; if the broker loses it, the row still says what is due."""
    if step is not None:
        STEPS[step.step].apply_async((job_id,), countdown=step.delay_s or None)


# --- the beat's periodic tasks ------------------------------------------------------------------


@app.task(name="imagegen.reconcile", ignore_result=True, acks_late=False)
def reconcile() -> None:
    get_reconciler().run_once()


@app.task(name="imagegen.dispatch", ignore_result=True, acks_late=False)
def dispatch_cycle() -> None:
    """One dispatcher cycle: queued jobs into the broker as the fleet's limits allow."""
    get_dispatcher().run_once()


@app.task(name="imagegen.webhook_sweep", acks_late=False, ignore_result=True)
def webhook_sweep() -> None:
    """Complete batches a crash left open; re-send deliveries whose message was lost."""
    outbox.sweep(get_engine(), stale_s=get_settings().stale_after_s)


# not acks_late: a long run must not come back as a duplicate after the visibility timeout
@app.task(name="imagegen.prune", ignore_result=True, acks_late=False)
def prune() -> None:
    """Delete finished jobs past ``IMAGEGEN_PRUNE_OLDER_THAN_DAYS``; nothing while unset."""
    plan = retention.prune_plan(get_settings())
    if plan is None:
        maintenance_log.debug("prune_disabled")
        return
    retention.prune(plan)


# --- webhooks -----------------------------------------------------------------------------------


@app.task(
    name="imagegen.webhook",
    acks_late=True,
    autoretry_for=(OperationalError, DBAPIError),
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=20,
)
def webhook(delivery_id: str) -> None:
    """POST one delivery; re-queue itself with a countdown while it keeps failing."""
    with webhook_step(delivery_id):
        delay = get_sender().deliver(uuid.UUID(delivery_id))
        if delay is not None:
            webhook.apply_async((delivery_id,), countdown=delay)


# --- the ports, carried out by Celery -----------------------------------------------------------

#: A process asks for at most one extra dispatch cycle this often (the beat runs one every
#: interval).
WAKE_EVERY_S = 0.2


class CeleryPorts:
    """:class:`worker.core.ports.Ports` as Celery messages on the configured broker."""

    def __init__(self) -> None:
        self._wake_lock = threading.Lock()
        self._last_wake = 0.0

    def send_step(self, step: Step, job_id: uuid.UUID, *, countdown_s: float = 0.0) -> None:
        STEPS[step].apply_async((str(job_id),), countdown=countdown_s or None)

    def wake_dispatcher(self, *, force: bool = False) -> bool:
        with self._wake_lock:
            now = time.monotonic()
            if not force and now - self._last_wake < WAKE_EVERY_S:
                return False
            self._last_wake = now
        try:
            dispatch_cycle.apply_async(expires=30)
        except Exception as exc:  # the beat's next cycle does the same
            log.warning(
                "dispatch_wake_failed", extra={"error": f"{type(exc).__name__}: {exc}"[:300]}
            )
            return False
        return True

    def send_webhooks(self, delivery_ids: Sequence[uuid.UUID]) -> None:
        for delivery_id in delivery_ids:
            webhook.apply_async((str(delivery_id),))


def install_ports() -> Ports:
    """Wire Celery in as this process's ports, unless something (a test's stand-in) already
    is; returns the ports in place."""
    existing = ports.installed()
    if existing is not None:
        return existing
    wired = CeleryPorts()
    ports.install(wired)
    return wired


@worker_init.connect
def _wire_worker(**_: Any) -> None:
    """A worker started any way (``imagegen worker``, or ``celery -A worker.broker.app``)
    sends what its tasks set off through Celery, and traces when an OTLP endpoint is set."""
    install_ports()
    tracing.setup("imagegen-worker")
