"""Metrics (Prometheus) and logs (JSON lines, secrets blanked). Imports ``core`` and ``db``
(transitions are counted after their transaction commits)."""
