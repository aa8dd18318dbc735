"""What the HTTP API, the command line and ``worker.producer`` call: enqueueing jobs and
batches, the views of jobs and batches, export, operators' actions, readiness and retention.
Imports ``core``, ``db``, ``telemetry``, ``store``, ``provider`` and ``blobs``."""
