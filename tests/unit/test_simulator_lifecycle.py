"""Predictions: planned timeline, lazily computed status, outcomes (with an injected clock)."""

from __future__ import annotations

import random

import pytest

from simulator.config import LatencyRange, SimulatorConfig
from simulator.runtime import Simulator
from simulator.state import FAILURE_TEXTS, Outcome, Prediction, decide_outcome
from simulator.validation import SubmitParams


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(prompt: str = "a cat", *, clock: FakeClock, **config: object) -> Prediction:
    sim = Simulator(SimulatorConfig.model_validate(config), clock=clock)
    params = SubmitParams(prompt=prompt)
    return sim.create_prediction(params, sim.draw(params))


def test_status_moves_created_processing_completed() -> None:
    clock = FakeClock()
    prediction = make(clock=clock, queue_s=1.0, latency={"1080p": LatencyRange(2.0, 2.0)})
    seen = []

    for _ in range(8):
        seen.append(prediction.status_at(clock()))
        clock.advance(0.5)

    assert seen == ["created"] * 2 + ["processing"] * 4 + ["completed"] * 2
    assert prediction.done_at == pytest.approx(prediction.created_at + 3.0)


def test_zero_latency_completes_at_once() -> None:
    clock = FakeClock()
    prediction = make(clock=clock, queue_s=0, latency={"1080p": [0, 0]})

    assert prediction.status_at(clock()) == "completed"
    assert prediction.is_done(clock())


def test_latency_is_drawn_within_range_and_repeats_with_the_seed() -> None:
    def latencies(seed: int) -> list[float]:
        clock = FakeClock()
        sim = Simulator(
            SimulatorConfig(seed=seed, queue_s=0, latency={"1080p": LatencyRange(1.0, 3.0)}),
            clock=clock,
        )
        params = SubmitParams(prompt="x")
        made = [sim.create_prediction(params, sim.draw(params)) for _ in range(20)]
        return [item.done_at - item.created_at for item in made if item.done_at is not None]

    first = latencies(11)

    assert all(1.0 <= value <= 3.0 for value in first)
    assert latencies(11) == first
    assert latencies(12) != first


def test_stuck_never_completes() -> None:
    clock = FakeClock()
    prediction = make("x [sim:stuck]", clock=clock, queue_s=0)

    clock.advance(10_000)

    assert prediction.status_at(clock()) == "processing"
    assert prediction.done_at is None and not prediction.is_done(clock())


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        ({}, Outcome("completed", output_count=1)),
        ({"failed": "1200"}, Outcome("failed", error="1200", output_count=0)),
        ({"no_output": None}, Outcome("completed", output_count=0)),
        ({"multi_output": None}, Outcome("completed", output_count=2)),
        ({"multi_output": "4", "nsfw": None}, Outcome("completed", output_count=4, nsfw=True)),
        ({"multi_output": "99"}, Outcome("completed", output_count=8)),
    ],
)
def test_outcomes(faults: dict[str, str | None], expected: Outcome) -> None:
    assert decide_outcome(faults, random.Random(0)) == expected


def test_failed_without_text_picks_a_known_one() -> None:
    outcome = decide_outcome({"failed": None}, random.Random(3))

    assert outcome.status == "failed" and outcome.error in FAILURE_TEXTS


def test_record_carries_completed_at_and_faults() -> None:
    clock = FakeClock()
    prediction = make("x [sim:nsfw]", clock=clock, queue_s=0, latency={"1080p": LatencyRange(1, 1)})

    record = prediction.record(clock())

    assert record["completed_at"] == prediction.done_at
    assert record["faults"] == {"nsfw": None}
    assert record["status"] == "processing"
    assert len(record["id"]) == 32 and record["id"] == record["id"].lower()
