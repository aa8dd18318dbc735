"""Every SQL statement of the product, one module per subject: a job's rows, its transitions,
the steps' claims and marks, dispatch, recovery, the fleet's gate, batches, webhook deliveries
and their outbox, operators' queries, retention and the dashboard. Imports ``core``, ``db``,
``telemetry`` and ``models``; sends nothing itself except through ``core.ports``."""
