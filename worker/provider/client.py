"""The HTTP client for the provider's two calls: submit a generation, fetch its result.

Sync ``httpx.Client`` on purpose: measured at 1.2-1.7k polls/s against ~260/s for
``AsyncClient`` at 100 concurrent requests, and it is thread-safe, so one instance serves all
threads of a worker. Every failure leaves as an error from :mod:`worker.core.errors`; the API key
lives only in the Authorization header and never in a message, a repr or a log line.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import httpx
from pydantic import SecretStr

from worker.core.errors import (
    ConfigurationError,
    InvalidRequest,
    PredictionNotFound,
    ProviderError,
    ProviderProtocolError,
)
from worker.core.settings import Settings
from worker.provider.errors_map import envelope_error, error_from_response, error_from_transport
from worker.provider.redact import safe_text
from worker.provider.wire import Prediction, PredictionState, is_safe_id, parse_prediction

logger = logging.getLogger(__name__)

SUBMIT_PATH = "/api/v3/vidu/viduq2/text-to-image"
RESULT_PATH = "/api/v3/predictions/{prediction_id}/result"
#: Endpoint names passed to the ``on_response`` hook (stable: they become metric labels).
SUBMIT = "submit"
RESULT = "result"

#: ``on_response(endpoint, http_status or None on a transport failure, seconds)``.
ResponseHook = Callable[[str, int | None, float], None]

#: Printable ASCII without spaces: anything else cannot travel in a header, and the HTTP
#: library's complaint about an illegal header would quote the key.
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")


class ProviderClient:
    """Calls the GPTProto ``viduq2`` text-to-image API; share one instance per process."""

    def __init__(
        self,
        base_url: str,
        api_key: str | SecretStr,
        *,
        connect_timeout_s: float = 5.0,
        submit_timeout_s: float = 30.0,
        poll_timeout_s: float = 15.0,
        transport: httpx.BaseTransport | None = None,
        max_connections: int = 100,
        on_response: ResponseHook | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = _checked_key(api_key)
        # Waiting for a pooled connection is part of connecting: nothing was sent yet.
        self._submit_timeout = httpx.Timeout(
            submit_timeout_s, connect=connect_timeout_s, pool=connect_timeout_s
        )
        self._poll_timeout = httpx.Timeout(
            poll_timeout_s, connect=connect_timeout_s, pool=connect_timeout_s
        )
        self._on_response = on_response
        self._http = httpx.Client(
            base_url=self.base_url,
            transport=transport,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={"Accept": "application/json"},
        )

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Self:
        """A client configured from the settings (extra kwargs pass on)."""
        if settings.api_key is None:
            raise ConfigurationError("GPTPROTO_API_KEY is not set")
        return cls(
            settings.base_url,
            settings.api_key,
            connect_timeout_s=settings.connect_timeout_s,
            submit_timeout_s=settings.submit_timeout_s,
            poll_timeout_s=settings.poll_timeout_s,
            **kwargs,
        )

    # --- the two calls ---------------------------------------------------------------------------

    def submit(self, body: dict[str, Any]) -> Prediction:
        """Create a prediction from a request body (see ``GenerationRequest.provider_body``).

        Any status is accepted with a valid id (an unknown one as PENDING): the prediction
        exists and is paid for, so its id must reach the caller.
        """
        response = self._send(SUBMIT, "POST", SUBMIT_PATH, self._submit_timeout, body)
        return self._prediction(response, unknown_status=PredictionState.PENDING)

    def get_result(self, prediction_id: str) -> Prediction:
        """The prediction's current state; :class:`PredictionNotFound` for an unknown id."""
        if not is_safe_id(prediction_id):
            raise PredictionNotFound(
                f"not a valid prediction id: {safe_text(repr(prediction_id), limit=80)}"
            )
        path = RESULT_PATH.format(prediction_id=prediction_id)
        response = self._send(RESULT, "GET", path, self._poll_timeout)
        return self._prediction(response)

    # --- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    # --- internals -------------------------------------------------------------------------------

    def _send(
        self,
        endpoint: str,
        method: str,
        path: str,
        timeout: httpx.Timeout,
        body: dict[str, Any] | None = None,
    ) -> httpx.Response:
        started = time.perf_counter()
        status: int | None = None
        try:
            response = self._http.request(
                method,
                path,
                json=body,
                timeout=timeout,
                headers={"Authorization": self._authorization()},
            )
            status = response.status_code
            return response
        except httpx.RequestError as exc:
            # Not chained: the cause's text is unscrubbed (the error's own message keeps it).
            raise error_from_transport(exc, secret=self._secret) from None
        finally:
            self._report(endpoint, status, time.perf_counter() - started)

    def _prediction(
        self, response: httpx.Response, *, unknown_status: PredictionState | None = None
    ) -> Prediction:
        if not response.is_success:
            raise self._http_error(response)
        try:
            payload = json.loads(response.content)
        except ValueError:
            raise ProviderProtocolError(
                f"provider answered HTTP {response.status_code} with a body that is not JSON",
                status_code=response.status_code,
            ) from None
        error = envelope_error(payload, secret=self._secret)
        if error is not None:
            raise error
        return parse_prediction(payload, unknown_status=unknown_status, secret=self._secret)

    def _http_error(self, response: httpx.Response) -> ProviderError:
        error = error_from_response(response, secret=self._secret)
        if isinstance(error, PredictionNotFound) and response.request.method == "POST":
            # A 404 on submit means a wrong base URL or a retired endpoint, not a prediction.
            return InvalidRequest(
                f"{error.message} (submit endpoint not found: check "
                f"GPTPROTO_BASE_URL, now {self.base_url!r})",
                status_code=404,
            )
        return error

    def _report(self, endpoint: str, status: int | None, seconds: float) -> None:
        logger.debug(
            "provider_response",
            extra={"endpoint": endpoint, "status": status, "duration_s": round(seconds, 4)},
        )
        if self._on_response is None:
            return
        try:
            self._on_response(endpoint, status, seconds)
        except Exception:  # a metrics hook must never turn a paid submit into an error
            logger.exception("provider_response_hook_failed", extra={"endpoint": endpoint})

    @property
    def _secret(self) -> str:
        return self._api_key.get_secret_value()

    def _authorization(self) -> str:
        return f"Bearer {self._secret}"


def _checked_key(api_key: str | SecretStr) -> SecretStr:
    """The key as a SecretStr, refused (without echoing it) if it cannot be sent."""
    raw = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
    raw = raw.strip()  # a trailing newline from a secrets file is a common slip
    if not raw:
        raise ConfigurationError("GPTPROTO_API_KEY is empty")
    if raw.lower().startswith("bearer "):
        raw = raw[len("bearer ") :].strip()
    if not _HEADER_SAFE.fullmatch(raw):
        raise ConfigurationError("GPTPROTO_API_KEY contains characters not allowed in a header")
    return SecretStr(raw)
