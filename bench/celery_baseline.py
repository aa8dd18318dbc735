"""Reference workloads on the same broker and Celery settings as the real tasks.

- ``bench.hop``: a bare chain of no-op tasks, each sending the next, as many hops as a job
  takes through the pipeline (submit, poll, transfer). What Celery alone costs per job.
- ``bench.naive``: the naive way to wait for a generation: submit, then sleep between polls
  inside the worker slot. One slot is held for the whole generation time.
- ``bench.naive_*`` (:mod:`bench.naive_chain`): the pipeline's three steps written naively.

The first two record their end in Redis (``RPUSH bench:{run_id} <unix time>``). Run a worker with
``celery -A bench.celery_baseline worker -Q imagegen-bench -P threads`` (``Stack`` does).
"""

from __future__ import annotations

import time
from functools import cache
from typing import Any

import redis
from celery import Celery

from worker.broker.app import celery_config
from worker.core.settings import get_settings
from worker.provider.client import ProviderClient
from worker.provider.wire import PredictionState

QUEUE = "imagegen-bench"

app = Celery("imagegen-bench", include=["bench.naive_chain"])  # the naive pipeline's tasks


def _config() -> dict[str, Any]:
    config = celery_config(get_settings())
    config.update(task_default_queue=QUEUE, beat_schedule={})
    return config


app.add_defaults(_config)  # read on first use, as ``worker.broker.app`` does


@app.task(name="bench.hop", acks_late=True)
def hop(run_id: str, hops_left: int) -> None:
    if hops_left > 1:
        hop.apply_async((run_id, hops_left - 1))
    else:
        record_end(run_id)


@app.task(name="bench.naive", acks_late=True)
def naive(run_id: str, request: dict[str, Any], poll_every_s: float) -> None:
    client = _provider()
    prediction = client.submit(request)
    while prediction.state is PredictionState.PENDING:
        time.sleep(poll_every_s)  # the slot waits on the provider: what the pipeline avoids
        prediction = client.get_result(prediction.id)
    record_end(run_id)


def record_end(run_id: str) -> None:
    _redis().rpush(f"bench:{run_id}", time.time())


def ends(run_id: str) -> list[float]:
    """The end times recorded so far for ``run_id``."""
    return [float(value) for value in _redis().lrange(f"bench:{run_id}", 0, -1)]


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(get_settings().effective_broker_url)


@cache
def _provider() -> ProviderClient:
    return ProviderClient.from_settings(get_settings())
