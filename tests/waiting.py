"""Waiting for jobs to reach a state, for tests that drive real workers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable

import pytest

from worker.service import jobs

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


def wait_for(
    job_ids: Iterable[uuid.UUID],
    timeout_s: float = 240,
    until: Callable[[dict], bool] | None = None,
) -> dict[uuid.UUID, dict]:
    """Poll the jobs' status until ``until(view)`` holds for all (default: terminal)."""
    ids = list(job_ids)
    done = until or (lambda view: view["status"] in TERMINAL)
    deadline = time.monotonic() + timeout_s
    views: dict[uuid.UUID, dict] = {}
    while time.monotonic() < deadline:
        views = {job_id: jobs.status(job_id) for job_id in ids}
        if all(done(view) for view in views.values()):
            return views
        time.sleep(0.3)
    waiting = {str(k): (v["status"], v["error_code"]) for k, v in views.items() if not done(v)}
    pytest.fail(f"jobs did not get there in {timeout_s} s: {waiting}")


def tagged_prompt(tag: str, tokens: str = "") -> str:
    """A prompt unique to this run (so the simulator's per-prompt counts are this job's)."""
    return f"{tag} {uuid.uuid4().hex[:8]} {tokens}".rstrip()


def predictions_created(simulator_url: str, prompt: str) -> int:
    """How many predictions the simulator created for ``prompt``."""
    import httpx

    stats = httpx.get(f"{simulator_url}/_sim/stats").json()
    return int(stats.get("predictions_per_prompt", {}).get(prompt, 0))
