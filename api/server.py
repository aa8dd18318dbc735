"""``imagegen api``: serve the HTTP API with uvicorn."""

from __future__ import annotations

import uvicorn

from worker.core.errors import ConfigurationError
from worker.core.settings import get_settings
from worker.telemetry.logs import configure_from_settings


def serve(*, host: str, port: int, workers: int = 1) -> None:
    """Run the API until interrupted; refuse to start without any API token configured."""
    settings = get_settings()
    if not settings.api_token_list:
        raise ConfigurationError(
            "IMAGEGEN_API_TOKENS must list at least one token "
            "(comma-separated); without one every call would be refused"
        )
    configure_from_settings(settings)  # IMAGEGEN_LOG_FORMAT; every secret setting blanked
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=30,
        # with --workers N, the supervisor kills a process that misses its health ping; the
        # default 5 s killed busy servers (and the requests in them) on a loaded 2-core host
        timeout_worker_healthcheck=30,
    )
