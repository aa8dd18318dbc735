"""The running simulator: its config, clock, predictions, request log and picture cache.

One ``Simulator`` lives in ``app.state.simulator``. Tests that start the server in a thread can
reach it through ``RunningSimulator.simulator`` to inspect state without going over HTTP.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from simulator.account import AccountLimits
from simulator.config import SimulatorConfig
from simulator.faults import FaultSet, choose_faults, recovered
from simulator.images import image_size, render_png
from simulator.outputs import OutputCache, UrlSigner, output_path
from simulator.requestlog import RequestLog
from simulator.state import Prediction, PredictionStore, plan_prediction
from simulator.validation import SubmitParams

Clock = Callable[[], float]
# Long waits (ghost_slow, slow downloads) wake up this often to notice a shutdown.
_PAUSE_SLICE_S = 0.05


@dataclass(frozen=True)
class Submission:
    """What one submit drew: its sequence number, its seeded RNG and its faults."""

    seq: int
    rng: random.Random
    faults: FaultSet


class Simulator:
    """State and behaviour shared by every request of one simulator run."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        clock: Clock | None = None,
        limits: AccountLimits | None = None,
    ) -> None:
        self._initial = config or SimulatorConfig()
        self._config = self._initial
        self.clock: Clock = clock or time.time
        self.limits = limits or AccountLimits(lambda: self._config)
        self.store = PredictionStore()
        self.log = RequestLog(self._initial.log_max_entries)
        self.cache = OutputCache(self._initial.cache_max_bytes)
        self.signer = UrlSigner(os.urandom(32))
        #: Set when the server stops, so long pauses end at once.
        self.stopping = threading.Event()

    @property
    def config(self) -> SimulatorConfig:
        """The current config (replaced whole by ``update_config``)."""
        return self._config

    def update_config(self, changes: dict[str, Any]) -> SimulatorConfig:
        """Apply ``changes`` (see ``SimulatorConfig.updated``) and return the new config."""
        self._config = self._config.updated(changes)
        self.cache.max_bytes = self._config.cache_max_bytes
        return self._config

    def reset(self, *, keep_config: bool = False) -> None:
        """Forget predictions, log and pictures; restore the startup config unless kept."""
        self.store.clear()
        self.log.clear()
        self.limits.reset()
        self.cache.clear()
        if not keep_config:
            self._config = self._initial
            self.cache.max_bytes = self._initial.cache_max_bytes

    def draw(self, params: SubmitParams) -> Submission:
        """Draw this submit's faults; raises UnknownFault for a bad prompt token."""
        seq = self.store.next_seq()
        # Seeding per sequence number keeps one prediction's draws independent of the others'.
        rng = random.Random(f"{self.config.seed}:{seq}")
        faults = choose_faults(params.prompt, self.config.profile, rng)
        faults = recovered(faults, self.log.submissions_of(params.prompt))
        return Submission(seq, rng, faults)

    def create_prediction(self, params: SubmitParams, submission: Submission) -> Prediction:
        """Create and store the prediction an accepted submit asked for."""
        now = self.clock()
        span = self.config.latency[params.resolution]
        latency_s = submission.rng.uniform(span.min_s, span.max_s)
        duration_s = None if "stuck" in submission.faults else latency_s
        prediction = plan_prediction(
            seq=submission.seq,
            params=params,
            faults=submission.faults,
            now=now,
            processing_at=self.limits.start_at(now, now + self.config.queue_s, duration_s),
            latency_s=latency_s,
            rng=submission.rng,
            noise=self.config.noise,
        )
        self.store.add(prediction)
        return prediction

    def output_urls(self, prediction: Prediction, base_url: str) -> list[str]:
        """Signed download URLs of a completed prediction's outputs."""
        base = self.config.output_base_url or base_url.rstrip("/")
        expires_at = (prediction.done_at or prediction.created_at) + self.config.output_ttl_s
        return [
            self.signer.url(base, output_path(prediction.id, index), expires_at)
            for index in range(prediction.outcome.output_count)
        ]

    def prediction_view(self, prediction: Prediction, base_url: str) -> dict[str, Any]:
        """The internal record (``GET /_sim/predictions/{id}``), with the output URLs it serves."""
        record = prediction.record(self.clock())
        done = record["status"] == "completed"
        record["outputs"] = self.output_urls(prediction, base_url) if done else []
        return record

    def picture(self, prediction: Prediction, index: int) -> bytes:
        """The PNG bytes of one output (rendered once, then cached)."""
        params, noise = prediction.params, prediction.noise
        size = image_size(params.aspect_ratio, params.resolution)
        key = (params.prompt, params.seed, index, size, noise)
        return self.cache.get_or_render(
            key, lambda: render_png(params.prompt, params.seed, index, size, noise=noise)
        )

    async def pause(self, seconds: float) -> None:
        """Sleep without blocking the server; ends early when the server stops."""
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, _PAUSE_SLICE_S))

    def stats(self) -> dict[str, Any]:
        """Counts of requests (from the log) and predictions (from the store)."""
        predictions = self.store.all()
        now = self.clock()
        return {
            **self.log.counts(),
            "predictions_per_prompt": dict(Counter(item.prompt for item in predictions)),
            "predictions_by_status": dict(Counter(item.status_at(now) for item in predictions)),
            "predictions_total": len(predictions),
            "limits": self.limits.record(now),
        }


def simulator_of(request: Request) -> Simulator:
    """The Simulator serving this request (stored on the app by ``create_app``)."""
    sim: Simulator = request.app.state.simulator
    return sim
