"""Celery, and nothing else imports it: the application, the thin tasks, the ports' Celery
implementation (``tasks.CeleryPorts``), the composition root (``wiring``) and the in-process
fleet of the embedded mode (``embedded``)."""
