"""The job state machine: pure, no I/O.

The database enforces the same rules again with guarded updates (``WHERE status = :expected``);
this module is what every caller consults first and what the tests pin down as a table.
"""

from __future__ import annotations

from enum import StrEnum

from worker.errors import ImagegenError


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


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

_ENDINGS = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})

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
