"""The Python producer API, for services in the same codebase: enqueue jobs and batches (in
your own SQLAlchemy transaction if you like), read their status, cancel, read manifests.

Importing this module wires the Celery broker into the process (``worker.core.ports``), so the
nudges sent after a commit reach the workers::

    from worker.producer import enqueue, status

    job_id = enqueue({"prompt": "a red fox in snow"}, idempotency_key="order-1234")
"""

from __future__ import annotations

from worker.broker.tasks import install_ports
from worker.service.batches import batch_status, enqueue_batch, manifest
from worker.service.jobs import cancel, enqueue, enqueue_job, status

install_ports()

__all__ = [
    "batch_status",
    "cancel",
    "enqueue",
    "enqueue_batch",
    "enqueue_job",
    "manifest",
    "status",
]
