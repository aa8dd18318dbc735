"""The job state machine and its vocabulary: pure, no I/O.

The statuses, which of them are active, terminal or in flight at the provider, the legal moves
between them, and what a committed move sets off (:class:`Moved`) are defined here once. The
database enforces the same rules again with guarded updates (``WHERE status = :expected``) and
its CHECK constraint (``models.job``, pinned equal to :data:`STATUSES` by a unit test); this
module is what every caller consults first and what the tests pin down as a table.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from worker.core.errors import ImagegenError


class JobStatus(StrEnum):
    QUEUED = "queued"
    """Accepted, waiting for capacity (or for submissions to be resumed)."""
    SUBMITTING = "submitting"
    """A worker holds a lease and is calling the provider."""
    RUNNING = "running"
    """The provider accepted it; the prediction id is stored; polling."""
    TRANSFERRING = "transferring"
    """The outputs are being copied to storage."""
    SUCCEEDED = "succeeded"
    """Every output is stored and recorded. Terminal."""
    FAILED = "failed"
    """Ended without images; ``error_code`` says why. Terminal (only an operator retries it)."""
    CANCELLED = "cancelled"
    """Ended by request. Terminal."""

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


#: Every status, in the order of a job's life (how counts are listed).
STATUSES: tuple[JobStatus, ...] = tuple(JobStatus)
#: The statuses that end a job (they carry ``finished_at``), in the order they are shown.
TERMINAL: tuple[JobStatus, ...] = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
#: The endings without images: they carry an error code, and stored outputs are discarded.
UNSUCCESSFUL: tuple[JobStatus, ...] = (JobStatus.FAILED, JobStatus.CANCELLED)
#: The statuses of a job still moving (the partial index ``ix_jobs_active_next`` holds them).
ACTIVE: tuple[JobStatus, ...] = tuple(s for s in JobStatus if s not in TERMINAL)
#: Statuses whose prediction is (or may be) in flight at the provider: the in-flight cap.
IN_FLIGHT: tuple[JobStatus, ...] = (JobStatus.SUBMITTING, JobStatus.RUNNING)

_ENDINGS = frozenset(UNSUCCESSFUL)

ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.SUBMITTING}) | _ENDINGS,
    # back to queued: a retry before (or an allowed retry after) the request reached the provider
    JobStatus.SUBMITTING: frozenset({JobStatus.QUEUED, JobStatus.RUNNING}) | _ENDINGS,
    JobStatus.RUNNING: frozenset({JobStatus.TRANSFERRING}) | _ENDINGS,
    JobStatus.TRANSFERRING: frozenset({JobStatus.SUCCEEDED}) | _ENDINGS,
    JobStatus.SUCCEEDED: frozenset(),
    # operator retry (`imagegen retry`): never taken by the pipeline on its own
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELLED: frozenset(),
}


class IllegalTransition(ImagegenError):
    """This status change is not allowed."""

    code = "illegal_transition"


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    return target in ALLOWED[current]


def transition(current: JobStatus, target: JobStatus) -> JobStatus:
    """Return ``target`` if moving there from ``current`` is legal, else raise."""
    if not can_transition(current, target):
        raise IllegalTransition(f"cannot move a job from {current} to {target}")
    return target


def sources_of(target: JobStatus) -> frozenset[JobStatus]:
    """Every status from which ``target`` may be reached (used to build guarded updates)."""
    return frozenset(s for s, targets in ALLOWED.items() if target in targets)


@dataclass(frozen=True)
class Moved:
    """A status change that was written, and what it sets off once its transaction commits."""

    job_id: uuid.UUID
    source: JobStatus
    target: JobStatus
    #: The job's poll count, when it left ``running`` (observed by the polls histogram).
    polls: int | None = None

    @property
    def ends(self) -> bool:
        """The job is over: its webhook is recorded and its batch checked for completion."""
        return self.target.terminal

    @property
    def frees_slot(self) -> bool:
        """A prediction left the provider's in-flight count: the dispatcher may send another."""
        return self.source in IN_FLIGHT and self.target not in IN_FLIGHT

    @property
    def orphans_outputs(self) -> bool:
        """Outputs copied (or half copied) before the job ended belong to nobody now."""
        return self.source is JobStatus.TRANSFERRING and self.target is not JobStatus.SUCCEEDED
