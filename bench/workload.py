"""Jobs through the real system: enqueue a batch with the public API, wait, read the outcome.

Times come from the job rows (``finished_at`` is written by the worker that ended the job), so
the bench's own polling granularity never enters a figure.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from itertools import cycle, islice
from typing import Any

from sqlalchemy import func, select

from bench import stats
from models import ACTIVE_STATUSES, Job, JobEvent

_WAIT_STEP_S = 0.5


@dataclass
class Round:
    """One batch of jobs from enqueue to the last terminal state."""

    jobs: int
    started: float
    batch_id: uuid.UUID | None = None
    ends: list[float] = field(default_factory=list)
    by_status: Counter[str] = field(default_factory=Counter)
    timed_out: bool = False

    @property
    def elapsed_s(self) -> float:
        return max(self.ends) - self.started if self.ends else float("nan")

    @property
    def first_end_s(self) -> float:
        return min(self.ends) - self.started if self.ends else float("nan")

    @property
    def jobs_per_s(self) -> float:
        return stats.rate(len(self.ends), self.elapsed_s) if self.ends else 0.0

    @property
    def steady_jobs_per_s(self) -> float:
        return stats.window_rate(self.ends)

    def states(self) -> str:
        """``1998 succeeded, 2 failed`` (and whether the wait timed out)."""
        text = ", ".join(f"{n} {status}" for status, n in sorted(self.by_status.items()))
        return text + ("; TIMED OUT" if self.timed_out else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "elapsed_s": round(self.elapsed_s, 3),
            "jobs_per_s": round(self.jobs_per_s, 2),
            "steady_jobs_per_s": round(self.steady_jobs_per_s, 2),
            "by_status": dict(self.by_status),
            "timed_out": self.timed_out,
            "ends_per_second": self.timeline(),
        }

    def timeline(self) -> list[int]:
        """How many jobs ended in each second after the start (for a look at the run's shape:
        a slow start, a stall, a tail)."""
        counts = [0] * (int(self.elapsed_s) + 1 if self.ends else 0)
        for end in self.ends:
            counts[max(int(end - self.started), 0)] += 1
        return counts


def requests(count: int, *, prompts: int, tag: str, **fields: Any) -> list[dict[str, Any]]:
    """``count`` job requests cycling over ``prompts`` distinct prompts (the simulator renders
    each picture once and serves it from its cache after that: its CPU is not ours)."""
    texts = [f"benchmark {tag} picture {index}" for index in range(prompts)]
    return [{"prompt": text, "seed": 7, **fields} for text in islice(cycle(texts), count)]


def enqueue(items: list[dict[str, Any]], *, name: str) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """Enqueue ``items`` as one batch through ``enqueue_batch``; its id and the job ids."""
    from worker.service.batches import enqueue_batch

    receipt = enqueue_batch(items, name=name)
    return receipt.batch_id, receipt.job_ids


def run(items: list[dict[str, Any]], *, name: str, timeout_s: float) -> Round:
    """Enqueue ``items`` and wait until every job has ended (or ``timeout_s`` passed)."""
    started = time.time()
    batch_id, job_ids = enqueue(items, name=name)
    outcome = Round(jobs=len(job_ids), started=started, batch_id=batch_id)
    outcome.timed_out = not wait(batch_id, timeout_s=timeout_s)
    outcome.by_status, outcome.ends = finished(batch_id)
    return outcome


def wait(batch_id: uuid.UUID, *, timeout_s: float) -> bool:
    """Wait until no job of the batch is active; False on time-out."""
    from worker.db.engine import session_scope

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with session_scope() as session:
            active = session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.batch_id == batch_id, Job.status.in_(ACTIVE_STATUSES))
            )
        if not active:
            return True
        time.sleep(_WAIT_STEP_S)
    return False


def finished(batch_id: uuid.UUID) -> tuple[Counter[str], list[float]]:
    """The batch's jobs by status, and the end times of those that ended."""
    from worker.db.engine import session_scope

    with session_scope() as session:
        rows = session.execute(
            select(Job.status, Job.finished_at).where(Job.batch_id == batch_id)
        ).all()
    by_status = Counter(status for status, _ in rows)
    return by_status, [at.timestamp() for _, at in rows if at is not None]


def transfer_spans(batch_id: uuid.UUID) -> list[tuple[float, float]]:
    """(start, end) of each succeeded job's transfer: its ``transfer_started`` event to its
    ``finished_at``."""
    from worker.db.engine import session_scope

    query = (
        select(func.max(JobEvent.at), Job.finished_at)
        .join(Job, Job.id == JobEvent.job_id)
        .where(
            Job.batch_id == batch_id,
            Job.status == "succeeded",
            JobEvent.event == "transfer_started",
        )
        .group_by(Job.id, Job.finished_at)
    )
    with session_scope() as session:
        return [
            (start.timestamp(), end.timestamp())
            for start, end in session.execute(query).all()
            if end is not None
        ]
