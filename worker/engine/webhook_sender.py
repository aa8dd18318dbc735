"""Webhooks: signed JSON events POSTed to a job's or a batch's ``callback_url``.

One attempt per call of :meth:`WebhookSender.deliver`: lease the delivery row, build the event
from the rows, sign it (``core.signing``), POST it without following redirects, log the
attempt and decide: delivered (2xx), given up (410, a refused address, or retried for longer
than ``IMAGEGEN_WEBHOOK_GIVE_UP_AFTER_S``) or tried again after a backoff with jitter. Short
waits come back as a countdown for the Celery task; longer ones are left to the sweep, so no
worker holds thousands of delayed messages in memory. The secret is never logged or stored.

The POST goes through ``worker.egress``: the target's host is resolved once, every address
checked against the URL policy, and the connection made to a checked address (no second
look-up a changed DNS answer could redirect). Any error of an attempt, expected or not, is
recorded as a failed attempt, so a delivery always reaches ``delivered`` or ``failed``.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy.orm import Session

from models import WebhookDelivery
from worker.blobs.storage import ObjectStore
from worker.core.settings import Settings
from worker.core.signing import signed_headers
from worker.core.timespec import iso
from worker.core.url_policy import callback_problem, callback_schemes
from worker.db.engine import SessionFactory
from worker.egress.guard import AddressGuard, Refused, Resolve, guarded_client, resolve
from worker.service import views
from worker.service.batches import batch_view
from worker.store import batches as batch_store
from worker.store import deliveries
from worker.store import jobs as job_store

log = logging.getLogger("imagegen.webhooks")

#: Waits up to this long are a Celery countdown; longer ones are picked up by the sweep.
COUNTDOWN_MAX_S = 60.0
_LEASE_MARGIN_S = 30.0
_MAX_ERROR_CHARS = 500


# --- the decision (pure) ------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """What one POST came back with."""

    status_code: int | None
    error: str | None
    duration_ms: int
    #: Not worth retrying: the target said it is gone (410) or its address is refused.
    permanent: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def retry_delay_s(
    *,
    attempt: int,
    age_s: float,
    base_s: float,
    max_s: float,
    give_up_after_s: float,
    rng: random.Random,
) -> float | None:
    """Seconds until the next attempt (exponential, capped, +-20 % jitter); None to give up."""
    if age_s >= give_up_after_s:
        return None
    delay = min(max_s, base_s * 2 ** max(attempt - 1, 0)) * rng.uniform(0.8, 1.2)
    return max(0.0, min(delay, give_up_after_s - age_s))


# --- the sender ---------------------------------------------------------------------------------


class WebhookSender:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: SessionFactory,
        store: ObjectStore | None,
        rng: random.Random | None = None,
        resolver: Resolve = resolve,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.store = store
        self.rng = rng or random.Random()
        guard = AddressGuard(
            schemes=callback_schemes(settings),
            allow_private=settings.allow_private_urls,
            resolver=resolver,
        )
        self.http = guarded_client(
            guard, timeout=httpx.Timeout(settings.webhook_timeout_s), follow_redirects=False
        )

    def deliver(self, delivery_id: uuid.UUID) -> float | None:
        """Make one attempt if the delivery is due; return a countdown for the next one."""
        now = datetime.now(UTC)
        lease_s = self.settings.webhook_timeout_s + _LEASE_MARGIN_S
        with self.sessions() as session:
            delivery = deliveries.claim(session, delivery_id=delivery_id, now=now, lease_s=lease_s)
            body = self._event(session, delivery) if delivery else b""
        if delivery is None:
            return None  # delivered, given up, not due yet, or another worker has it
        attempt = self._post(delivery, body)
        return self._record(delivery, attempt)

    def _event(self, session: Session, delivery: WebhookDelivery) -> bytes:
        data: dict[str, Any] = {}
        if delivery.job_id is not None:
            job = job_store.get_job(session, delivery.job_id)
            if job is not None:
                images = job_store.list_images(session, job.id)
                data["job"] = views.job_resource(job, images, self.store)
        if delivery.batch_id is not None:
            batch = batch_store.get_batch(session, delivery.batch_id)
            if batch is not None:
                data["batch"] = batch_view(session, batch)
        event = {
            "id": str(delivery.id),
            "type": delivery.event,
            "created_at": iso(delivery.created_at),
            "data": data,
        }
        return json.dumps(event, separators=(",", ":")).encode()

    def _post(self, delivery: WebhookDelivery, body: bytes) -> Attempt:
        started = time.monotonic()
        refused = self._refused(delivery.url)
        if refused is not None:
            return refused
        secret = self.settings.webhook_secret
        if secret is None or not secret.get_secret_value():
            return Attempt(
                None, "IMAGEGEN_WEBHOOK_SECRET is not set: events are not sent unsigned", 0
            )
        headers = signed_headers(
            secret.get_secret_value().encode(),
            int(time.time()),
            body,
            event=delivery.event,
            delivery_id=str(delivery.id),
        )
        try:
            with self.http.stream("POST", delivery.url, content=body, headers=headers) as reply:
                status = reply.status_code
        except Refused as exc:
            return Attempt(None, f"callback_url refused: {exc.message}", _ms(started), True)
        except httpx.HTTPError as exc:
            return Attempt(None, _describe(exc), _ms(started))
        except Exception as exc:  # never a crash without an attempt row: retried, then given up
            log.exception("webhook_send_error", extra={"delivery_id": str(delivery.id)})
            return Attempt(None, _describe(exc), _ms(started))
        error = None if 200 <= status < 300 else f"answered HTTP {status}"
        return Attempt(status, error, _ms(started), permanent=status == 410)

    def _refused(self, url: str) -> Attempt | None:
        """Check the URL again at send time (the settings may have changed since enqueue);
        its addresses are checked as the connection is made."""
        problem = callback_problem(url, self.settings)
        return Attempt(None, f"callback_url {problem}", 0, permanent=True) if problem else None

    def _record(self, delivery: WebhookDelivery, attempt: Attempt) -> float | None:
        now = datetime.now(UTC)
        delay = None if attempt.ok or attempt.permanent else self._delay(delivery, now)
        outcome = "delivered" if attempt.ok else ("pending" if delay is not None else "failed")
        retry_at = now + timedelta(seconds=delay) if delay is not None else None
        with self.sessions() as session:
            deliveries.record_attempt(
                session,
                delivery=delivery,
                now=now,
                outcome=outcome,
                status_code=attempt.status_code,
                error=attempt.error,
                duration_ms=attempt.duration_ms,
                retry_at=retry_at,
            )
        log.info(
            f"webhook_{outcome}",
            extra={
                "delivery_id": str(delivery.id),
                "event": delivery.event,
                "attempt": delivery.attempts,
                "status_code": attempt.status_code,
                "error": attempt.error,
                "host": urlsplit(delivery.url).hostname,
            },
        )
        return delay if delay is not None and delay <= COUNTDOWN_MAX_S else None

    def _delay(self, delivery: WebhookDelivery, now: datetime) -> float | None:
        settings = self.settings
        return retry_delay_s(
            attempt=delivery.attempts,
            age_s=(now - delivery.created_at).total_seconds(),
            base_s=settings.webhook_retry_base_s,
            max_s=settings.webhook_retry_max_s,
            give_up_after_s=settings.webhook_give_up_after_s,
            rng=self.rng,
        )

    def close(self) -> None:
        self.http.close()


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
