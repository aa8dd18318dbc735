"""The simulator's account limits: rate limit, concurrency limit (queue or reject), record."""

from __future__ import annotations

from typing import Any

from simulator.account import AccountLimits
from simulator.config import LatencyRange, SimulatorConfig
from simulator.runtime import Simulator
from simulator.validation import SubmitParams
from tests.unit.test_simulator_lifecycle import FakeClock


def limits_for(**config: Any) -> AccountLimits:
    current = SimulatorConfig.model_validate(config)
    return AccountLimits(lambda: current)


def test_rate_limit_lets_a_burst_through_then_one_per_interval() -> None:
    limits = limits_for(submit_rate=2.0, submit_burst=3)
    admitted = [limits.admit(100.0) is None for _ in range(5)]
    assert admitted == [True, True, True, False, False]
    refusal = limits.admit(100.1)
    assert refusal is not None and refusal.reason == "rate" and refusal.arg == "1"
    assert limits.admit(100.5) is None  # 0.5 s at 2/s refills one token
    assert limits.admit(100.6) is not None
    record = limits.record(100.6)
    assert record["admitted"] == 4 and record["refused"] == {"rate": 4, "concurrency": 0}
    assert record["max_submits_per_second_seen"] == 4


def test_rate_limit_refusal_without_retry_after_when_configured() -> None:
    limits = limits_for(submit_rate=1.0, rate_limit_retry_after=False)
    assert limits.admit(0.0) is None
    refusal = limits.admit(0.0)
    assert refusal is not None and refusal.arg is None


def test_reject_mode_refuses_over_the_concurrency_limit_until_one_finishes() -> None:
    limits = limits_for(max_concurrency=2, over_concurrency="reject")
    for _ in range(2):
        assert limits.admit(0.0) is None
        limits.start_at(0.0, 0.0, 10.0)
    refusal = limits.admit(5.0)
    assert refusal is not None and refusal.reason == "concurrency"
    assert limits.admit(10.0) is None  # the first two are done at t=10
    assert limits.record(10.0)["max_in_flight_seen"] == 2


def test_queue_mode_starts_work_over_the_limit_when_a_slot_frees() -> None:
    limits = limits_for(max_concurrency=2, over_concurrency="queue")
    starts = []
    for duration in (10.0, 4.0, 3.0, 1.0):
        assert limits.admit(0.0) is None
        starts.append(limits.start_at(0.0, 0.5, duration))
    # slots free at 10.5 and 4.5; the third starts at 4.5 (ends 7.5), the fourth at 7.5
    assert starts == [0.5, 0.5, 4.5, 7.5]
    # all four were created or processing at once: the record shows the fleet went over
    assert limits.record(0.0)["max_in_flight_seen"] == 4


def test_a_stuck_prediction_holds_its_slot_for_good() -> None:
    limits = limits_for(max_concurrency=1, over_concurrency="reject")
    assert limits.admit(0.0) is None
    limits.start_at(0.0, 0.0, None)
    assert limits.admit(1e9) is not None


def test_simulator_reports_and_resets_its_limits() -> None:
    clock = FakeClock()
    sim = Simulator(
        SimulatorConfig(max_concurrency=1, latency={"1080p": LatencyRange(5, 5)}, queue_s=0.0),
        clock=clock,
    )
    params = SubmitParams(prompt="a cat")
    first = sim.create_prediction(params, sim.draw(params))
    second = sim.create_prediction(params, sim.draw(params))
    assert second.processing_at == first.done_at  # waited in created for the slot
    assert second.status_at(clock()) == "created"
    assert sim.stats()["limits"]["max_in_flight_seen"] == 2
    sim.reset()
    assert sim.stats()["limits"]["max_in_flight_seen"] == 0


def test_limits_follow_config_changes_at_run_time() -> None:
    sim = Simulator(SimulatorConfig(), clock=FakeClock())
    assert all(sim.limits.admit(0.0) is None for _ in range(50))
    sim.update_config({"submit_rate": 1.0, "submit_burst": 1})
    assert sim.limits.admit(0.0) is None
    assert sim.limits.admit(0.0) is not None
