"""Operating a whole batch: cancel it, retry its failed jobs.

Cancelling is idempotent and happens in one transaction: every ``queued`` job of the batch is
cancelled by one statement (a 100,000-job backlog included), then each job already at the
provider (``submitting``, ``running``, ``transferring``: at most the fleet's in-flight cap) is
cancelled as ``imagegen cancel`` cancels one: its row says so, and its next step sees it and
stops (outputs being copied are discarded). Ended jobs are left as they are. The batch then
completes (and sends its ``batch.completed`` webhook) once its last job has ended.

Retrying is the operator's retry (``service.operator.retry_failed``) restricted to the batch.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from worker.core.errors import BadInput, BatchNotFound
from worker.core.states import JobStatus
from worker.core.untrusted import text_problem
from worker.db.engine import session_scope
from worker.service import operator
from worker.service.batches import batch_status
from worker.store import batches as batch_store
from worker.store import transitions

log = logging.getLogger("imagegen.batches")

REASON = "batch cancelled by request"


@dataclass(frozen=True)
class BatchAction:
    """What an action on a batch did: how many jobs it moved, and the batch afterwards."""

    jobs: int
    batch: dict[str, Any]


def cancel_batch(batch_id: uuid.UUID, *, reason: str = REASON) -> BatchAction:
    """Cancel every job of the batch that has not ended; returns how many were cancelled."""
    with session_scope() as session:
        if batch_store.get_batch(session, batch_id) is None:
            raise BatchNotFound(f"no batch with id {batch_id}")
        queued = transitions.cancel_queued_of_batch(session, batch_id=batch_id, reason=reason)
        moving = batch_store.active_job_ids(session, batch_id=batch_id)
        running = sum(
            transitions.cancel(session, job_id=job_id, reason=reason) is not None
            for job_id in moving
        )
    log.info(
        "batch_cancelled",
        extra={"batch_id": str(batch_id), "queued": queued, "in_flight": running},
    )
    return BatchAction(queued + running, batch_status(batch_id))


def retry_batch(
    batch_id: uuid.UUID, *, status: str = JobStatus.FAILED.value, code: str | None = None
) -> BatchAction:
    """Send the batch's failed jobs (with ``code``, if given) back to the queue."""
    if status != JobStatus.FAILED.value:
        raise BadInput([("status", "must be failed (only failed jobs can be retried)")])
    if code is not None and (problem := text_problem(code, 64)):
        raise BadInput([("code", problem)])
    batch_status(batch_id)  # 404 for an unknown (or pruned) batch
    retried = operator.retry_failed(batch_id=batch_id, code=code or None)
    return BatchAction(len(retried), batch_status(batch_id))
