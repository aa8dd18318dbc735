"""Thin Celery tasks: each runs one pipeline step and schedules what the step says comes next."""

from __future__ import annotations

import uuid

from celery import Task

from worker.celery_app import app
from worker.pipeline import Next
from worker.runtime import get_pipeline


@app.task(name="imagegen.submit", acks_late=True)
def submit(job_id: str) -> None:
    schedule(job_id, get_pipeline().submit(uuid.UUID(job_id)))


@app.task(name="imagegen.poll", acks_late=True)
def poll(job_id: str) -> None:
    schedule(job_id, get_pipeline().poll(uuid.UUID(job_id)))


@app.task(name="imagegen.transfer", acks_late=True)
def transfer(job_id: str) -> None:
    schedule(job_id, get_pipeline().transfer(uuid.UUID(job_id)))


STEPS: dict[str, Task] = {"submit": submit, "poll": poll, "transfer": transfer}


def schedule(job_id: str, step: Next | None) -> None:
    """Send the next step; if the broker loses it, the row still says what is due."""
    if step is not None:
        STEPS[step.step].apply_async((job_id,), countdown=step.delay_s or None)


def dispatch(job_ids: list[uuid.UUID]) -> None:
    """Nudge freshly enqueued jobs into the broker (after their rows were committed)."""
    for job_id in job_ids:
        submit.apply_async((str(job_id),))
