"""The ``/v1`` routes of the HTTP API, one module per resource, and the operations endpoints
(``/healthz``, ``/readyz``, ``/metrics``)."""
