"""Hooks for account limits: a submit rate limit and a concurrency limit (not implemented yet).

The provider publishes per-tier limits on images per minute and on concurrent tasks, and work over
the concurrency limit may wait in ``created`` instead of being rejected. A limits object is asked
twice per submit: whether to admit it, and when the admitted prediction may start processing.
"""

from __future__ import annotations

from typing import Protocol


class AccountLimits(Protocol):
    """What the simulator asks an account's limits on every submit."""

    def admit(self, now: float) -> str | None:
        """None to admit the submit, or the name of a submit-stage fault to reject it with
        (``http_429`` for a rate limit, for instance)."""
        ...

    def start_at(self, now: float, ready_at: float) -> float:
        """When an admitted prediction starts ``processing``: ``ready_at`` when a slot is free,
        later when the account is at its concurrency limit (the prediction waits in ``created``)."""
        ...


class Unlimited:
    """An account without limits: every submit is admitted and starts when it is ready."""

    def admit(self, now: float) -> str | None:
        """Admit every submit."""
        return None

    def start_at(self, now: float, ready_at: float) -> float:
        """Start as soon as the prediction is ready."""
        return ready_at
