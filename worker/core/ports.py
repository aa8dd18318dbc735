"""Ports: what the data and service code send out, without knowing who carries it.

Writing a row is the record; a message is only a nudge that makes the row move sooner (a lost
one is found again from the rows by the dispatcher, the reconciler or the outbox sweep). The
code that writes rows says *what* to nudge through :class:`Ports`; ``worker.broker`` installs
the Celery implementation at start-up (``imagegen``'s commands, the HTTP API, the workers,
``worker.producer``), the way dramatiq's actors call ``get_broker()`` instead of importing a
concrete broker. Tests install a recording stand-in.

Nothing here imports Celery, and nothing below ``worker.broker`` imports ``worker.broker``:
the dependency points from the broker down to this interface.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from typing import Literal, Protocol

from worker.core.errors import ConfigurationError

#: The job steps a message can ask for (each is a Celery task ``imagegen.<step>``).
Step = Literal["submit", "poll", "transfer", "discard"]


class Ports(Protocol):
    """The messages the rest of the code sends."""

    def send_step(self, step: Step, job_id: uuid.UUID, *, countdown_s: float = 0.0) -> None:
        """Ask a worker to run ``step`` for the job (after ``countdown_s`` seconds)."""

    def wake_dispatcher(self, *, force: bool = False) -> bool:
        """Ask for a dispatch cycle now (rate-limited per process unless ``force``); False
        when no message was sent (too soon, or the broker is down)."""

    def send_webhooks(self, delivery_ids: Sequence[uuid.UUID]) -> None:
        """Ask a worker to make one attempt of each webhook delivery."""


class NotWired(ConfigurationError):
    """No broker is wired into this process: nothing can be sent to the workers."""

    code = "not_wired"


_lock = threading.Lock()
_installed: Ports | None = None


def install(ports: Ports | None) -> Ports | None:
    """Make ``ports`` the process's implementation (None: none); returns the one it replaces."""
    global _installed
    with _lock:
        previous, _installed = _installed, ports
    return previous


def current() -> Ports:
    """The installed implementation; raises :class:`NotWired` when there is none."""
    ports = _installed
    if ports is None:
        raise NotWired(
            "no broker is wired into this process: import worker.producer, or call "
            "worker.broker.tasks.install_ports() at start-up"
        )
    return ports


def installed() -> Ports | None:
    """The installed implementation, or None (``install_ports`` keeps one already there)."""
    return _installed
