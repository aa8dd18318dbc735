"""Webhook deliveries for people: list them with their attempts, redeliver them.

``GET /v1/webhooks/deliveries``, ``imagegen webhooks list`` and the dashboard's job and batch
pages read :func:`list_deliveries`. A redelivery reopens the same delivery row (so receivers
see the same event id, ``X-Imagegen-Delivery``, and can drop it if they had it) and hands it
to the workers: one new attempt, recorded like every other. If that attempt fails, the
delivery is retried with backoff while the event is younger than
``IMAGEGEN_WEBHOOK_GIVE_UP_AFTER_S``, else it is failed again at once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from models import WebhookAttempt, WebhookDelivery
from worker.core import cursor
from worker.core.errors import BadInput, ImagegenError
from worker.core.timespec import iso
from worker.db.engine import session_scope
from worker.service.listing import DEFAULT_LIMIT, check_limit
from worker.store import deliveries, outbox

log = logging.getLogger("imagegen.webhooks")

STATUSES = ("pending", "delivered", "failed")
#: Deliveries reopened per transaction by :func:`redeliver_failed`.
CHUNK = 500


class DeliveryNotFound(ImagegenError):
    """No webhook delivery with this id exists."""

    code = "not_found"


class DeliveryBusy(ImagegenError):
    """An attempt of this delivery is under way; try again in a moment."""

    code = "delivery_in_progress"


def list_deliveries(
    *,
    status: str | None = None,
    job_id: uuid.UUID | None = None,
    batch_id: uuid.UUID | None = None,
    limit: int = DEFAULT_LIMIT,
    after: str | None = None,
) -> dict[str, Any]:
    """One page of deliveries, newest first, each with its attempts: ``{"items",
    "next_cursor"}``."""
    if status is not None and status not in STATUSES:
        raise BadInput([("status", f"must be one of {', '.join(STATUSES)}")])
    check_limit(limit)
    before = cursor.decode(after)
    with session_scope() as session:
        found = deliveries.deliveries_page(
            session, status=status, job_id=job_id, batch_id=batch_id, before=before, limit=limit + 1
        )
        page = found[:limit]
        tries = deliveries.attempts_of(session, [delivery.id for delivery in page])
        items = [delivery_view(delivery, tries[delivery.id]) for delivery in page]
    last = page[-1] if len(found) > limit else None
    return {
        "items": items,
        "next_cursor": cursor.encode(last.created_at, last.id) if last else None,
    }


def delivery(delivery_id: uuid.UUID) -> dict[str, Any]:
    with session_scope() as session:
        found = deliveries.get_delivery(session, delivery_id)
        if found is None:
            raise DeliveryNotFound(f"no webhook delivery with id {delivery_id}")
        return delivery_view(found, deliveries.attempts_of(session, [found.id])[found.id])


def redeliver(delivery_id: uuid.UUID) -> dict[str, Any]:
    """One new attempt of the delivery (same event id), whatever its status; answers it."""
    with session_scope() as session:
        if deliveries.get_delivery(session, delivery_id) is None:
            raise DeliveryNotFound(f"no webhook delivery with id {delivery_id}")
        reopened = deliveries.reopen(session, delivery_ids=[delivery_id], now=datetime.now(UTC))
    if not reopened:
        raise DeliveryBusy()
    outbox.send(reopened)
    log.info("webhook_redelivered", extra={"delivery_id": str(delivery_id)})
    return delivery(delivery_id)


def redeliver_failed(
    *, job_id: uuid.UUID | None = None, batch_id: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """Redeliver every failed delivery (of one job, of one batch); returns their ids."""
    with session_scope() as session:
        candidates = deliveries.failed_ids(session, job_id=job_id, batch_id=batch_id)
    done: list[uuid.UUID] = []
    for start in range(0, len(candidates), CHUNK):
        with session_scope() as session:
            chunk = candidates[start : start + CHUNK]
            reopened = deliveries.reopen(session, delivery_ids=chunk, now=datetime.now(UTC))
        outbox.send(reopened)
        done += reopened
    log.info("webhooks_redelivered", extra={"count": len(done)})
    return done


def for_pages(
    *, job_id: uuid.UUID | None = None, batch_id: uuid.UUID | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    """The latest deliveries of a job or a batch (the dashboard's pages)."""
    return list(list_deliveries(job_id=job_id, batch_id=batch_id, limit=limit)["items"])


def delivery_view(item: WebhookDelivery, tries: Sequence[WebhookAttempt]) -> dict[str, Any]:
    """A delivery and its attempts; ``id`` is also the event id receivers see."""
    return {
        "id": str(item.id),
        "event": item.event,
        "status": item.status,
        "url": item.url,
        "job_id": str(item.job_id) if item.job_id else None,
        "batch_id": str(item.batch_id) if item.batch_id else None,
        "attempt_count": item.attempts,
        "last_status_code": item.last_status_code,
        "last_error": item.last_error,
        "created_at": iso(item.created_at),
        "next_attempt_at": iso(item.next_attempt_at),
        "delivered_at": iso(item.delivered_at),
        "attempts": [
            {
                "attempt": attempt.attempt,
                "at": iso(attempt.at),
                "status_code": attempt.status_code,
                "error": attempt.error,
                "duration_ms": attempt.duration_ms,
            }
            for attempt in tries
        ],
    }
