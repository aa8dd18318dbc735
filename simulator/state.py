"""Predictions in memory, with a status computed lazily from the clock.

A prediction's whole future is decided when it is created (when it starts, when it ends, how it
ends); a poll only compares that plan with the current time. So the simulator needs no background
threads and a test with an injected clock can step through the states.
"""

from __future__ import annotations

import random
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from simulator.faults import FaultSet, arg_of
from simulator.validation import SubmitParams

MODEL = "viduq2"
#: Error texts a ``failed`` prediction carries when the token does not choose one.
FAILURE_TEXTS = ("CreationPolicyViolation", "ModelUnavailable", "InternalServiceFailure", "5000")
_MAX_OUTPUTS = 8


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a prediction ends."""

    status: str  #: ``completed`` or ``failed``
    error: str | None = None
    output_count: int = 1
    nsfw: bool = False


@dataclass(slots=True)
class Prediction:
    """One prediction: its request, its planned timeline and what was done to it."""

    id: str
    seq: int
    params: SubmitParams
    faults: FaultSet
    created_at: float
    processing_at: float
    #: The moment the simulator considers it done; None when it is stuck.
    done_at: float | None
    outcome: Outcome
    #: Noisy pictures or not, fixed at creation so a config change cannot alter served bytes.
    noise: bool = False
    polls: int = 0
    downloads: dict[int, int] = field(default_factory=dict)
    #: When a poll first answered with the final state (for lag measurements).
    first_done_poll_at: float | None = None

    @property
    def prompt(self) -> str:
        """The prompt as submitted, fault tokens included."""
        return self.params.prompt

    def status_at(self, now: float) -> str:
        """``created``, ``processing``, ``completed`` or ``failed`` at time ``now``."""
        if now < self.processing_at:
            return "created"
        if self.done_at is None or now < self.done_at:
            return "processing"
        return self.outcome.status

    def is_done(self, now: float) -> bool:
        """Whether the prediction has reached its final state at time ``now``."""
        return self.done_at is not None and now >= self.done_at

    def record(self, now: float) -> dict[str, Any]:
        """The full internal record as JSON (``GET /_sim/predictions/{id}``)."""
        return {
            "id": self.id,
            "seq": self.seq,
            "status": self.status_at(now),
            "prompt": self.prompt,
            "params": self.params.as_dict(),
            "faults": self.faults,
            "created_at": self.created_at,
            "processing_at": self.processing_at,
            "completed_at": self.done_at,
            "outcome": self.outcome.status,
            "error": self.outcome.error,
            "output_count": self.outcome.output_count,
            "nsfw": self.outcome.nsfw,
            "polls": self.polls,
            "downloads": {str(index): count for index, count in self.downloads.items()},
            "first_done_poll_at": self.first_done_poll_at,
        }


def decide_outcome(faults: FaultSet, rng: random.Random) -> Outcome:
    """The ending the prediction's faults ask for; ``stuck`` is handled by the timeline."""
    if "failed" in faults:
        error = faults["failed"] or rng.choice(FAILURE_TEXTS)
        return Outcome("failed", error=error, output_count=0)
    if "no_output" in faults:
        return Outcome("completed", output_count=0)
    count = 1
    if "multi_output" in faults:
        count = min(max(_int(arg_of(faults, "multi_output"), 2), 1), _MAX_OUTPUTS)
    return Outcome("completed", output_count=count, nsfw="nsfw" in faults)


def plan_prediction(
    *,
    seq: int,
    params: SubmitParams,
    faults: FaultSet,
    now: float,
    processing_at: float,
    latency_s: float,
    rng: random.Random,
    noise: bool = False,
) -> Prediction:
    """A new prediction created at ``now`` that starts processing at ``processing_at``."""
    done_at = None if "stuck" in faults else processing_at + latency_s
    return Prediction(
        id=uuid.uuid4().hex,
        seq=seq,
        params=params,
        faults=faults,
        created_at=now,
        processing_at=processing_at,
        done_at=done_at,
        outcome=decide_outcome(faults, rng),
        noise=noise,
    )


class PredictionStore:
    """Thread-safe map of predictions by id (the server's handlers and tests share it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._predictions: dict[str, Prediction] = {}
        self._next_seq = 1

    def next_seq(self) -> int:
        """A fresh sequence number; it seeds the prediction's RNG, so runs repeat."""
        with self._lock:
            seq, self._next_seq = self._next_seq, self._next_seq + 1
            return seq

    def add(self, prediction: Prediction) -> None:
        """Store a new prediction."""
        with self._lock:
            self._predictions[prediction.id] = prediction

    def get(self, prediction_id: str) -> Prediction | None:
        """The prediction, or None for an unknown id."""
        with self._lock:
            return self._predictions.get(prediction_id)

    def count_poll(self, prediction_id: str) -> tuple[Prediction, int] | None:
        """Count one poll; returns the prediction and the poll's 1-based number."""
        with self._lock:
            prediction = self._predictions.get(prediction_id)
            if prediction is None:
                return None
            prediction.polls += 1
            return prediction, prediction.polls

    def mark_done_seen(self, prediction: Prediction, now: float) -> None:
        """Remember the first time a poll reported the final state."""
        with self._lock:
            if prediction.first_done_poll_at is None:
                prediction.first_done_poll_at = now

    def count_download(self, prediction: Prediction, index: int) -> int:
        """Count one download of output ``index``; returns its 1-based number."""
        with self._lock:
            prediction.downloads[index] = prediction.downloads.get(index, 0) + 1
            return prediction.downloads[index]

    def all(self) -> list[Prediction]:
        """Every prediction, oldest first."""
        with self._lock:
            return sorted(self._predictions.values(), key=lambda prediction: prediction.seq)

    def clear(self) -> None:
        """Forget every prediction and restart the sequence."""
        with self._lock:
            self._predictions.clear()
            self._next_seq = 1


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
