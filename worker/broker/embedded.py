"""The whole fleet inside one process (the embedded mode of ``imagegen demo``): a Celery worker
on threads and, in a thread of its own, what ``imagegen beat`` schedules for a fleet
(dispatch cycles, and a reconciler pass every fifteenth).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from celery.contrib.testing.worker import start_worker

from worker.broker.app import app
from worker.broker.wiring import get_dispatcher, get_reconciler
from worker.core.settings import QUEUES, get_settings

#: Dispatch cycles per reconciler pass.
RECONCILE_EVERY = 15


@contextmanager
def running_in_process(*, concurrency: int = 8) -> Iterator[None]:
    """A worker taking every queue, and the beat's cycles, until the block ends."""
    with (
        start_worker(
            app,
            queues=list(QUEUES),
            pool="threads",
            concurrency=concurrency,
            perform_ping_check=False,
            hostname="demo@localhost",
            loglevel="WARNING",
            shutdown_timeout=30,
        ),
        _beat(),
    ):
        yield


@contextmanager
def _beat() -> Iterator[None]:
    stop = threading.Event()
    interval = get_settings().dispatch_interval_s

    def tick() -> None:
        passes = 0
        while not stop.wait(interval):
            get_dispatcher().run_once()
            passes += 1
            if passes % RECONCILE_EVERY == 0:
                get_reconciler().run_once()

    thread = threading.Thread(target=tick, name="demo-beat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
