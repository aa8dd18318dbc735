"""Thin Celery tasks: each runs one pipeline step and schedules what the step says comes next.

A database error (Postgres restarting) retries the task shortly; whatever is lost meanwhile
the reconciler finds again from the rows.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import Task
from sqlalchemy.exc import DBAPIError, OperationalError

from worker.celery_app import app
from worker.pipeline import Next
from worker.runtime import get_dispatcher, get_pipeline, get_reconciler

_DB_RETRY: dict[str, Any] = {
    "autoretry_for": (OperationalError, DBAPIError),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "max_retries": 20,
    "acks_late": True,
}


@app.task(name="imagegen.submit", **_DB_RETRY)
def submit(job_id: str) -> None:
    schedule(job_id, get_pipeline().submit(uuid.UUID(job_id)))


@app.task(name="imagegen.poll", bind=True, **_DB_RETRY)
def poll(self: Task, job_id: str) -> None:
    pipeline = get_pipeline()
    if _redelivered(self) and not pipeline.redelivered_poll(uuid.UUID(job_id)):
        return
    schedule(job_id, pipeline.poll(uuid.UUID(job_id)))


@app.task(name="imagegen.transfer", **_DB_RETRY)
def transfer(job_id: str) -> None:
    schedule(job_id, get_pipeline().transfer(uuid.UUID(job_id)))


@app.task(name="imagegen.discard", **_DB_RETRY)
def discard(job_id: str) -> None:
    get_pipeline().discard(uuid.UUID(job_id))


@app.task(name="imagegen.reconcile", ignore_result=True, acks_late=False)
def reconcile() -> None:
    get_reconciler().run_once()


@app.task(name="imagegen.dispatch", ignore_result=True, acks_late=False)
def dispatch_cycle() -> None:
    """One dispatcher cycle: queued jobs into the broker as the fleet's limits allow."""
    get_dispatcher().run_once()


STEPS: dict[str, Task] = {"submit": submit, "poll": poll, "transfer": transfer, "discard": discard}


def _redelivered(task: Task) -> bool:
    return bool((task.request.delivery_info or {}).get("redelivered"))


def schedule(job_id: str, step: Next | None) -> None:
    """Send the next step; if the broker loses it, the row still says what is due."""
    if step is not None:
        STEPS[step.step].apply_async((job_id,), countdown=step.delay_s or None)


def send_step(step: str, job_id: uuid.UUID) -> None:
    STEPS[step].apply_async((str(job_id),))


def send_submit(job_id: uuid.UUID, countdown_s: float = 0.0) -> None:
    """The dispatcher's message: submit this job (when its token will be there)."""
    submit.apply_async((str(job_id),), countdown=countdown_s or None)
