"""Fleet-wide submission state as operators see it: paused or not, and the circuit breaker.

``read_fleet_state`` is the one place ``imagegen status`` (and anything else) reads it. Until
the fleet limits (pause/resume, breaker) exist, it answers "unknown" for the pause and
"closed" for the breaker (nothing can open one yet); the fleet-limits work replaces its body
and calls ``worker.metrics.set_paused`` / ``set_breaker`` when the state changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class FleetState:
    """Whether submissions are paused fleet-wide (None: unknown) and the breaker's state."""

    paused: bool | None
    breaker: str
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_fleet_state() -> FleetState:
    """The current pause and breaker state of the whole fleet."""
    return FleetState(paused=None, breaker="closed", reason="fleet limits not installed")
