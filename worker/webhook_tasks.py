"""Thin Celery tasks for webhooks: one delivery attempt, and the periodic outbox sweep."""

from __future__ import annotations

import uuid

from sqlalchemy.exc import DBAPIError, OperationalError

from worker.celery_app import app


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
    from worker.webhooks import get_sender

    delay = get_sender().deliver(uuid.UUID(delivery_id))
    if delay is not None:
        webhook.apply_async((delivery_id,), countdown=delay)


@app.task(name="imagegen.webhook_sweep", acks_late=False, ignore_result=True)
def webhook_sweep() -> None:
    """Complete batches a crash left open; re-send deliveries whose message was lost."""
    from worker import outbox
    from worker.db import get_engine
    from worker.settings import get_settings

    outbox.sweep(get_engine(), stale_s=get_settings().stale_after_s)
