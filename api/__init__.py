"""The HTTP API (FastAPI) for other services, and the web dashboard under ``/dashboard``."""
