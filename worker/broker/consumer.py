"""The worker's broker consumer: Celery's, made to outlive a broker outage.

When the broker connection drops, Celery (5.7) collects the connection, which detaches its
transport from it, and then closes it. With Redis that detached transport is still needed:
closing a channel first puts its unacknowledged messages back, and the tasks still running
when the connection dropped acknowledge their messages on that channel when they end (even
after the consumer has reconnected). Each of those asks the detached transport for the
broker's address and raises ``AttributeError`` instead of a connection error; Celery does not
expect that, logs "Unrecoverable error" and the worker stops with every job it held.

Here the collected transport keeps its connection details, so the lost channel behaves as a
channel of an unreachable broker: its clean-up fails with connection errors (which Celery
ignores, and logs) while the broker is down, and succeeds (as no-ops, or as a restore) once
it is back. The consumer reconnects by itself (``broker_connection_retry``, without limit); what
the broker lost meanwhile the reconciler drives again from the job rows.
"""

from __future__ import annotations

from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer


class Consumer(CeleryConsumer):
    """``worker_consumer``: Celery's consumer, whose clean-up after a lost broker connection
    cannot stop the worker."""

    def on_connection_error_after_connected(self, exc: Any) -> None:
        if self.connection is not None:
            keep_address_after_collect(self.connection)
        super().on_connection_error_after_connected(exc)


def keep_address_after_collect(connection: Any) -> None:
    """Make ``connection.collect()`` leave its transport pointing at the connection's details
    (the broker's address), which the lost channels need for their clean-up."""
    transport = connection.transport
    collect = connection.collect

    def collect_keeping_address(*args: Any, **kwargs: Any) -> None:
        collect(*args, **kwargs)
        transport.client = connection

    connection.collect = collect_keeping_address
