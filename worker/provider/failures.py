"""Why a prediction ended without images, as an error from :mod:`worker.core.errors`.

A failed prediction is still an HTTP 200: its ``error`` text (a name such as
``CreationPolicyViolation`` or a numeric code such as ``1200``) decides whether the job failed
by its own fault (content policy, bad input) or by the provider's.
"""

from __future__ import annotations

import re

from worker.core.errors import (
    ContentPolicyViolation,
    InvalidRequest,
    NoOutput,
    PredictionFailed,
    ProviderError,
)
from worker.provider.wire import Prediction, PredictionState

_POLICY_WORDS = re.compile(r"(?i)polic|moderat|guideline|nsfw|sensitive|safety|unsafe")
_NUMERIC_CODE = re.compile(r"(?<!\d)(\d{4})(?!\d)")

#: What the provider's numeric failure codes mean, for messages an operator can act on.
CODE_MEANINGS: dict[int, str] = {
    1200: "content moderation",
    1400: "bad input",
    1401: "bad input",
    1402: "media download failed",
    1403: "task failed",
    1405: "task failed",
    5000: "provider internal error",
    5003: "provider unavailable",
    5004: "provider timeout",
}
_MODERATION_CODES = frozenset({1200})
_BAD_INPUT_CODES = frozenset({1400, 1401, 1402})


def mentions_content_policy(text: str) -> bool:
    """True when provider text reads like a content-policy refusal."""
    return bool(_POLICY_WORDS.search(text))


def numeric_code(text: str) -> int | None:
    """The first four-digit code in provider text (``"1200"``, ``"error 1401: ..."``)."""
    match = _NUMERIC_CODE.search(text)
    return int(match[1]) if match else None


def failure_error(prediction: Prediction) -> ProviderError:
    """The error that ends a finished prediction that has no images.

    FAILED maps to :class:`ContentPolicyViolation`, :class:`InvalidRequest` or
    :class:`PredictionFailed` (carrying the provider's text); COMPLETED with no outputs maps
    to :class:`NoOutput`. Raises ``ValueError`` for a prediction that did not fail.
    """
    if prediction.state is PredictionState.COMPLETED and not prediction.has_outputs:
        return NoOutput(f"prediction {prediction.id} completed without any output image")
    if prediction.state is not PredictionState.FAILED:
        raise ValueError(f"prediction {prediction.id} is {prediction.state}, not failed")
    return error_for_failure_text(prediction.error)


def error_for_failure_text(text: str | None) -> ProviderError:
    """Classify a failed prediction's ``error`` text (already scrubbed and shortened)."""
    if not text:
        return PredictionFailed("provider reported failure without a reason")
    code = numeric_code(text)
    detail = _with_meaning(text, code)
    if code in _MODERATION_CODES or mentions_content_policy(text):
        return ContentPolicyViolation(f"content policy violation: {detail}")
    if code in _BAD_INPUT_CODES:
        return InvalidRequest(f"provider rejected the input: {detail}")
    return PredictionFailed(f"provider reported failure: {detail}")


def _with_meaning(text: str, code: int | None) -> str:
    """Add what a bare numeric code means (``"5004"`` -> ``"5004 (provider timeout)"``)."""
    if code is not None and text.strip() == str(code) and code in CODE_MEANINGS:
        return f"{text} ({CODE_MEANINGS[code]})"
    return text
