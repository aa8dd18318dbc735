"""The provider's wire format, parsed loosely into one normalized, immutable :class:`Prediction`.

The provider's schema drifts (``urls`` as an object or a list, ``error`` null or "", two date
formats, ``has_nsfw_contents`` null or a list), so the wire models accept every shape seen in
the wild. Fields the pipeline depends on (``id``, ``status``, ``outputs``) must be valid or the
answer is a :class:`ProviderProtocolError`; decorative fields degrade to ``None`` instead.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from worker.core.errors import ProviderProtocolError
from worker.provider.redact import safe_text

#: A prediction id that is safe as one URL path segment (no "/", no "." or ".." alone).
_SAFE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


class PredictionState(StrEnum):
    """What the pipeline needs to know about a provider status."""

    PENDING = "pending"
    """Not finished: created, queued or running at the provider."""
    COMPLETED = "completed"
    """Finished; ``outputs`` should hold the image URLs (an empty list is a failure)."""
    FAILED = "failed"
    """Finished without images; ``error`` may say why."""


_STATUS_STATES: dict[str, PredictionState] = {
    **dict.fromkeys(
        (
            "created",
            "processing",
            "queueing",
            "queued",
            "pending",
            "in_progress",
            "starting",
            "running",
        ),
        PredictionState.PENDING,
    ),
    **dict.fromkeys(("completed", "success", "succeeded"), PredictionState.COMPLETED),
    **dict.fromkeys(
        ("failed", "cancelled", "canceled", "timeout", "expired", "error"), PredictionState.FAILED
    ),
}


def classify_status(raw: str) -> PredictionState | None:
    """The state a provider status means (any letter case), or None if it is unknown."""
    return _STATUS_STATES.get(raw.strip().lower().replace("-", "_"))


def is_safe_id(value: object) -> bool:
    """True when ``value`` can be put into a URL path as one segment."""
    return isinstance(value, str) and _SAFE_ID.fullmatch(value) is not None


class Prediction(BaseModel):
    """One prediction as the pipeline sees it, whatever shape the provider sent."""

    model_config = ConfigDict(frozen=True)

    id: str
    state: PredictionState
    raw_status: str
    outputs: list[str] = Field(default_factory=list)
    error: str | None = None
    has_nsfw: list[bool] = Field(default_factory=list)
    created_at: datetime | None = None
    execution_time_ms: int | None = None
    result_url: str | None = None

    @property
    def done(self) -> bool:
        """True once the provider will not change this prediction any more."""
        return self.state is not PredictionState.PENDING

    @property
    def has_outputs(self) -> bool:
        """True when there is at least one output URL (a completed prediction needs one)."""
        return bool(self.outputs)


# --- loose input coercion -----------------------------------------------------------------------


def parse_timestamp(value: object) -> datetime | None:
    """A timezone-aware datetime from either provider date format; None if unparseable.

    Naive times (``2026-01-01 00:00:00``) are taken as UTC. Python 3.11's ``fromisoformat``
    reads RFC 3339 with ``Z``, offsets and nanoseconds (it truncates to microseconds).
    """
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except (ValueError, OverflowError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _as_list(value: Any) -> Any:
    """null means an empty list; a lone value means a one-element list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _error_text(value: Any, info: ValidationInfo) -> str | None:
    """The failure text, whether sent as a string, a number or an object; "" means none.
    Scrubbed of the configured API key (passed in the validation context) and of anything
    shaped like a key."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dict):
        parts = (value.get(key) for key in ("code", "type", "message"))
        value = ": ".join(str(part) for part in parts if part not in (None, ""))
    elif not isinstance(value, str):
        value = json.dumps(value) if isinstance(value, list) else str(value)
    return safe_text(value, _secret(info)) or None


def _secret(info: ValidationInfo) -> str | None:
    context = info.context
    return context.get("secret") if isinstance(context, dict) else None


def _drop_blank(urls: list[str]) -> list[str]:
    return [url.strip() for url in urls if url.strip()]


OutputList = Annotated[list[str], BeforeValidator(_as_list), AfterValidator(_drop_blank)]
FlagList = Annotated[list[bool], BeforeValidator(_as_list)]
ErrorText = Annotated[str | None, BeforeValidator(_error_text)]
Timestamp = Annotated[datetime | None, BeforeValidator(parse_timestamp)]
Millis = Annotated[float | None, Field(ge=0, allow_inf_nan=False)]


# --- wire models --------------------------------------------------------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class WireUrls(_Wire):
    """``urls``: links the provider offers for this prediction."""

    get: str | None = None


class WireTimings(_Wire):
    """``timings``: milliseconds spent per phase."""

    inference: Millis = None


class WirePrediction(_Wire):
    """The ``data`` object of the provider's envelope, as sent."""

    id: str = Field(min_length=1)
    status: str = Field(min_length=1)
    model: str | None = None
    outputs: OutputList = Field(default_factory=list)
    urls: WireUrls | list[WireUrls] | None = None
    error: ErrorText = None
    execution_time: Millis = Field(default=None, alias="executionTime")
    timings: WireTimings | None = None
    has_nsfw_contents: FlagList = Field(default_factory=list)
    created_at: Timestamp = None

    @field_validator("model", "urls", "execution_time", "timings", "has_nsfw_contents", mode="wrap")
    @classmethod
    def _decorative(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        # Garbage in a field the pipeline does not depend on must not lose a paid prediction.
        try:
            return handler(value)
        except ValidationError:
            field = cls.model_fields[info.field_name or ""]
            return field.get_default(call_default_factory=True)

    @property
    def result_url(self) -> str | None:
        """``urls.get``, or ``urls[0].get`` (the docs show both)."""
        urls = self.urls[0] if isinstance(self.urls, list) and self.urls else self.urls
        return urls.get if isinstance(urls, WireUrls) else None

    def kept_text(self) -> list[str]:
        """The provider's text the system stores as it came (not scrubbed: it is used)."""
        return [self.id, self.status, *self.outputs, self.result_url or ""]

    @property
    def execution_time_ms(self) -> int | None:
        """``executionTime`` or ``timings.inference``, whichever is filled (both are 0 early)."""
        inference = self.timings.inference if self.timings else None
        values = [value for value in (self.execution_time, inference) if value is not None]
        return round(max(values)) if values else None

    def normalize(self, state: PredictionState) -> Prediction:
        """The pipeline's view of this prediction, in ``state``."""
        return Prediction(
            id=self.id,
            state=state,
            raw_status=self.status,
            outputs=self.outputs,
            error=self.error,
            has_nsfw=self.has_nsfw_contents,
            created_at=self.created_at,
            execution_time_ms=self.execution_time_ms,
            result_url=self.result_url,
        )


# --- parsing ------------------------------------------------------------------------------------


def prediction_fields(payload: object) -> dict[str, Any] | None:
    """The prediction object in a response: the envelope's ``data``, or the top level.

    Some gateways answer with the bare prediction; it is accepted when it has an id and status.
    """
    if not isinstance(payload, dict):
        return None
    data = payload.get("data")
    if isinstance(data, dict):
        return data
    if "id" in payload and "status" in payload:
        return payload
    return None


def parse_prediction(
    payload: object, *, unknown_status: PredictionState | None = None, secret: str | None = None
) -> Prediction:
    """Parse a decoded response body into a :class:`Prediction`.

    A status this module does not know raises :class:`ProviderProtocolError` (retryable:
    guessing "pending" would poll blindly until the deadline, guessing "failed" could discard
    a paid image). Pass ``unknown_status`` to accept it anyway, as submit does: there the id
    is what matters, and losing it would leave an untracked paid prediction.

    ``secret`` is the configured API key: it is scrubbed from the error text, and an answer
    that carries it anywhere else the system would keep (id, status, URLs) is refused.
    """
    fields = prediction_fields(payload)
    if fields is None:
        raise ProviderProtocolError("provider answer holds no prediction object")
    try:
        wire = WirePrediction.model_validate(fields, context={"secret": secret})
    except ValidationError as exc:
        raise ProviderProtocolError(f"malformed prediction: {_summary(exc)}") from None
    if secret and any(secret in text for text in wire.kept_text()):
        raise ProviderProtocolError("the provider's answer echoes the API key: refused")
    if not is_safe_id(wire.id):
        shown = safe_text(repr(wire.id), secret, limit=80)
        raise ProviderProtocolError(f"prediction id is not a safe path segment: {shown}")
    state = classify_status(wire.status) or unknown_status
    if state is None:
        shown = safe_text(repr(wire.status), secret, limit=60)
        raise ProviderProtocolError(f"unknown prediction status {shown}")
    return wire.normalize(state)


def _summary(exc: ValidationError) -> str:
    """Which fields were wrong, without echoing their values (they may be huge)."""
    problems = (f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
    return safe_text("; ".join(problems))
