"""One error hierarchy for the whole system.

Whether an error is retryable, terminal for the job, or a fleet-wide condition is a property of
its class, so the retry policy never inspects messages. Every class's docstring is its default
message. No error text ever includes the provider API key.
"""

from __future__ import annotations

from typing import Any


class ImagegenError(Exception):
    """Image generation queue error."""

    #: Named failure code recorded on the job when this error ends it (see design.md).
    code: str = "error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.__class__.__name__).strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigurationError(ImagegenError):
    """The configuration is invalid."""


class JobNotFound(ImagegenError):
    """No job with this id exists."""

    code = "not_found"


# --- provider -----------------------------------------------------------------------------------


class ProviderError(ImagegenError):
    """The provider call failed."""

    #: Worth trying again later (the job keeps its place).
    retryable: bool = False
    #: Not the job's fault: the whole fleet must stop submitting (401/403).
    fleet_wide: bool = False
    #: The request may have reached the provider.
    request_sent: bool = True
    #: The provider answered with a definite refusal (4xx): nothing was created.
    refused: bool = False

    def __init__(
        self,
        message: str | None = None,
        *,
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after_s = retry_after_s

    @property
    def ambiguous(self) -> bool:
        """On a submit: a paid prediction may exist although no answer said so."""
        return self.request_sent and not self.refused

    def __reduce__(self) -> tuple[Any, ...]:
        # keep the keyword arguments through pickling (multiprocessing, result backends)
        return (
            _rebuild_provider_error,
            (type(self), self.message, self.status_code, self.retry_after_s),
        )


def _rebuild_provider_error(
    cls: type[ProviderError], message: str, status_code: int | None, retry_after_s: float | None
) -> ProviderError:
    return cls(message, status_code=status_code, retry_after_s=retry_after_s)


class ProviderUnreachable(ProviderError):
    """The provider could not be reached; the request was never sent."""

    retryable = True
    request_sent = False
    code = "provider_unreachable"


class ProviderTimeout(ProviderError):
    """The provider did not answer in time after the request was sent."""

    retryable = True
    code = "provider_timeout"


class ProviderServerError(ProviderError):
    """The provider answered with a server or gateway error (5xx)."""

    retryable = True
    code = "provider_server_error"


class ProviderProtocolError(ProviderError):
    """The provider's answer could not be understood."""

    retryable = True
    code = "provider_protocol_error"


class RateLimited(ProviderError):
    """The provider's rate limit was exceeded (429)."""

    retryable = True
    refused = True
    code = "rate_limited"


class AuthenticationFailed(ProviderError):
    """The provider rejected the API key (401): submissions must pause fleet-wide."""

    fleet_wide = True
    refused = True
    code = "provider_auth"


class PermissionDenied(ProviderError):
    """The provider refused the request: no permission or insufficient balance (403)."""

    fleet_wide = True
    refused = True
    code = "provider_forbidden"


class InvalidRequest(ProviderError):
    """The provider rejected the request parameters (400)."""

    refused = True
    code = "invalid_request"


class ContentPolicyViolation(ProviderError):
    """The provider refused the prompt or images under its content policy."""

    refused = True
    code = "content_policy"


class PredictionNotFound(ProviderError):
    """The provider does not know this prediction id (404)."""

    refused = True
    code = "prediction_not_found"


class PredictionFailed(ProviderError):
    """The provider reported that the generation failed."""

    code = "provider_failed"


class NoOutput(ProviderError):
    """The provider reported the prediction completed but returned no output image."""

    code = "no_output"


# --- transfer -----------------------------------------------------------------------------------


class TransferError(ImagegenError):
    """Copying an output image to storage failed."""

    retryable = True
    code = "transfer_error"


class OutputUnavailable(TransferError):
    """The output URL is expired, missing or does not serve a valid image."""

    code = "output_unavailable"


class OutputExpired(OutputUnavailable):
    """The output URL answered 403/404: it has expired or never existed."""

    retryable = False


class OutputCorrupt(OutputUnavailable):
    """The downloaded output is not the complete PNG it was announced to be."""


class OutputRefused(OutputUnavailable):
    """The output breaks the safety rules: a URL the policy refuses (private address, bad
    scheme, too many redirects) or an image over the size or pixel caps. Not retried."""

    code = "output_refused"
    retryable = False


class StorageError(TransferError):
    """The object store refused or failed the upload."""

    code = "storage_error"


# --- input --------------------------------------------------------------------------------------


class BadInput(ImagegenError):
    """The request is invalid."""

    code = "invalid_request"

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{field}: {rule}" for field, rule in problems))


class BadLines(BadInput):
    """Some lines of a batch are invalid; nothing was enqueued."""

    def __init__(self, lines: list[tuple[int, str, str]]) -> None:
        #: (line number, field, rule) for every bad line, in file order.
        self.lines = lines
        super().__init__([(f"line {number}: {field}", rule) for number, field, rule in lines])


class IdempotencyConflict(ImagegenError):
    """This idempotency key was already used with a different request."""

    code = "idempotency_conflict"


class BatchNotFound(ImagegenError):
    """No batch with this id exists."""

    code = "not_found"


class AmbiguousId(ImagegenError):
    """This short id matches more than one job or batch."""

    code = "ambiguous_id"

    def __init__(self, field: str, prefix: str, candidates: list[str]) -> None:
        #: The field that held the id, and the full ids it matches (the first few).
        self.field, self.candidates = field, candidates
        super().__init__(
            f"{field}: {prefix!r} matches {len(candidates)} or more ids: "
            f"{', '.join(candidates)}; give more characters"
        )
