"""In-memory stand-ins the tests install through the product's ports (``worker.core.ports``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from worker.core.ports import Step


@dataclass
class RecordingPorts:
    """Records what the code asked to send, and sends nothing."""

    steps: list[tuple[Step, uuid.UUID, float]] = field(default_factory=list)
    wakes: list[bool] = field(default_factory=list)
    webhooks: list[uuid.UUID] = field(default_factory=list)

    def send_step(self, step: Step, job_id: uuid.UUID, *, countdown_s: float = 0.0) -> None:
        self.steps.append((step, job_id, countdown_s))

    def wake_dispatcher(self, *, force: bool = False) -> bool:
        self.wakes.append(force)
        return True

    def send_webhooks(self, delivery_ids: Sequence[uuid.UUID]) -> None:
        self.webhooks.extend(delivery_ids)
