"""The provider's wire format: every shape seen in the wild parses into one Prediction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from worker.core.errors import (
    ContentPolicyViolation,
    InvalidRequest,
    NoOutput,
    PredictionFailed,
    ProviderProtocolError,
)
from worker.provider.failures import error_for_failure_text, failure_error
from worker.provider.wire import (
    Prediction,
    PredictionState,
    classify_status,
    is_safe_id,
    parse_prediction,
    parse_timestamp,
)

PID = "0123456789abcdef0123456789abcdef"


def envelope(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": PID,
        "model": "viduq2",
        "status": "created",
        "outputs": [],
        "urls": {"get": f"https://gptproto.com/api/v3/predictions/{PID}/result"},
        "error": None,
        "executionTime": 0,
        "timings": {"inference": 0},
        "has_nsfw_contents": [],
        "created_at": "2026-01-01 00:00:00",
    }
    data.update(fields)
    return {"code": 200, "message": "success", "data": data}


def parse(**fields: Any) -> Prediction:
    return parse_prediction(envelope(**fields))


# --- status -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        ("created", PredictionState.PENDING),
        ("processing", PredictionState.PENDING),
        ("queueing", PredictionState.PENDING),
        ("pending", PredictionState.PENDING),
        ("in_progress", PredictionState.PENDING),
        ("in-progress", PredictionState.PENDING),
        ("starting", PredictionState.PENDING),
        ("completed", PredictionState.COMPLETED),
        ("success", PredictionState.COMPLETED),
        ("succeeded", PredictionState.COMPLETED),
        ("failed", PredictionState.FAILED),
        ("cancelled", PredictionState.FAILED),
        ("canceled", PredictionState.FAILED),
        ("timeout", PredictionState.FAILED),
        ("expired", PredictionState.FAILED),
        ("error", PredictionState.FAILED),
        ("COMPLETED", PredictionState.COMPLETED),
        (" Processing ", PredictionState.PENDING),
        ("Failed", PredictionState.FAILED),
    ],
)
def test_every_status_alias_maps_to_a_state(raw: str, state: PredictionState) -> None:
    prediction = parse(status=raw, outputs=["https://cdn/x.png"])
    assert prediction.state is state
    assert prediction.raw_status == raw
    assert prediction.done is (state is not PredictionState.PENDING)


def test_unknown_status_is_a_protocol_error_when_polling() -> None:
    with pytest.raises(ProviderProtocolError, match="unknown prediction status 'teleporting'"):
        parse(status="teleporting")
    assert classify_status("teleporting") is None


def test_unknown_status_can_be_accepted_as_pending_on_submit() -> None:
    prediction = parse_prediction(
        envelope(status="teleporting"), unknown_status=PredictionState.PENDING
    )
    assert (prediction.state, prediction.raw_status) == (PredictionState.PENDING, "teleporting")


# --- outputs and urls ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        (["https://cdn/a.png"], ["https://cdn/a.png"]),
        (["https://cdn/a.png", "https://cdn/b.png"], ["https://cdn/a.png", "https://cdn/b.png"]),
        ([], []),
        (None, []),
        ("https://cdn/a.png", ["https://cdn/a.png"]),
        (["", "  "], []),
    ],
)
def test_outputs_shapes(outputs: Any, expected: list[str]) -> None:
    prediction = parse(status="completed", outputs=outputs)
    assert prediction.outputs == expected
    assert prediction.has_outputs is bool(expected)


def test_missing_outputs_field_is_empty() -> None:
    payload = envelope(status="completed")
    del payload["data"]["outputs"]
    assert parse_prediction(payload).has_outputs is False


@pytest.mark.parametrize(
    ("urls", "expected"),
    [
        ({"get": "https://g/1"}, "https://g/1"),
        ([{"get": "https://g/1"}], "https://g/1"),
        ([{"get": "https://g/1"}, {"get": "https://g/2"}], "https://g/1"),
        ([], None),
        (None, None),
        ({}, None),
        ("garbage", None),
        ([42], None),
    ],
)
def test_result_url_from_object_list_or_missing(urls: Any, expected: str | None) -> None:
    assert parse(urls=urls).result_url == expected


def test_result_url_when_urls_is_absent() -> None:
    payload = envelope()
    del payload["data"]["urls"]
    assert parse_prediction(payload).result_url is None


# --- error text ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("CreationPolicyViolation", "CreationPolicyViolation"),
        (1200, "1200"),
        ("5004", "5004"),
        ({"code": 1401, "message": "image download failed"}, "1401: image download failed"),
        (False, None),
        ("x" * 1000, "x" * 299 + "…"),
    ],
)
def test_error_text_is_normalized(error: Any, expected: str | None) -> None:
    assert parse(status="failed", error=error).error == expected


# --- dates --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-01-01 00:00:00", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01T00:00:00Z", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01T00:00:00.123456789Z", datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        ("2026-01-01T08:00:00+08:00", datetime(2026, 1, 1, tzinfo=UTC)),
        (
            "2026-01-01T05:30:00.5-05:00",
            datetime(2026, 1, 1, 5, 30, 0, 500000, tzinfo=timezone(timedelta(hours=-5))),
        ),
        ("not a date", None),
        ("2026-13-45 99:99:99", None),
        ("", None),
        (None, None),
        (1767225600, None),
    ],
)
def test_both_date_formats_and_garbage(raw: Any, expected: datetime | None) -> None:
    parsed = parse(created_at=raw).created_at
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is not None
    assert parse_timestamp(raw) == expected


# --- flags and timings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], []),
        (None, []),
        ([False], [False]),
        ([True], [True]),
        ([True, False], [True, False]),
        (True, [True]),
        ("garbage", []),
        ([{"nsfw": True}], []),
    ],
)
def test_has_nsfw_variants(flags: Any, expected: list[bool]) -> None:
    assert parse(has_nsfw_contents=flags).has_nsfw == expected


def test_has_nsfw_absent_is_empty() -> None:
    payload = envelope()
    del payload["data"]["has_nsfw_contents"]
    assert parse_prediction(payload).has_nsfw == []


@pytest.mark.parametrize(
    ("execution", "timings", "expected"),
    [
        (0, {"inference": 0}, 0),
        (41234, {"inference": 40000}, 41234),
        (0, {"inference": 39000.6}, 39001),
        (None, None, None),
        ("1500", None, 1500),
        (-5, None, None),
        ("soon", {"inference": "later"}, None),
    ],
)
def test_execution_time_ms(execution: Any, timings: Any, expected: int | None) -> None:
    assert parse(executionTime=execution, timings=timings).execution_time_ms == expected


# --- envelope shapes and protocol errors --------------------------------------------------------


def test_top_level_prediction_without_envelope_is_accepted() -> None:
    prediction = parse_prediction({"id": PID, "status": "processing"})
    assert (prediction.id, prediction.state) == (PID, PredictionState.PENDING)


def test_minimal_prediction_has_defaults() -> None:
    prediction = parse_prediction({"data": {"id": PID, "status": "created"}})
    assert prediction == Prediction(id=PID, state=PredictionState.PENDING, raw_status="created")


def test_prediction_is_immutable() -> None:
    prediction = parse()
    with pytest.raises(ValueError, match="frozen"):
        prediction.id = "other"


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "success",
        {"code": 200, "message": "success"},
        {"code": 200, "message": "success", "data": None},
        {"data": {"status": "created"}},
        {"data": {"id": PID}},
        {"data": {"id": "", "status": "created"}},
        {"data": {"id": 12345, "status": "created"}},
        {"data": {"id": PID, "status": 3}},
        {"data": {"id": PID, "status": "completed", "outputs": [{"url": "https://x"}]}},
        {"data": {"id": "../../admin", "status": "created"}},
        {"data": {"id": "a/b", "status": "created"}},
    ],
)
def test_unusable_answers_are_protocol_errors(payload: Any) -> None:
    with pytest.raises(ProviderProtocolError) as caught:
        parse_prediction(payload)
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        (PID, True),
        ("task_1-A.b", True),
        ("", False),
        (".", False),
        ("..", False),
        ("a/b", False),
        ("a?b", False),
        ("a%2Fb", False),
        ("x" * 129, False),
        (None, False),
    ],
)
def test_safe_prediction_ids(value: Any, safe: bool) -> None:
    assert is_safe_id(value) is safe


# --- failure_error ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cls", "fragment"),
    [
        ("CreationPolicyViolation", ContentPolicyViolation, "CreationPolicyViolation"),
        ("1200", ContentPolicyViolation, "1200 (content moderation)"),
        ("Input may not meet the guidelines", ContentPolicyViolation, "guidelines"),
        ("content moderation rejected the prompt", ContentPolicyViolation, "moderation"),
        ("NSFW content detected", ContentPolicyViolation, "NSFW"),
        ("1400", InvalidRequest, "1400 (bad input)"),
        ("1401", InvalidRequest, "1401"),
        ("1402: failed to download reference image", InvalidRequest, "download"),
        ("1403", PredictionFailed, "1403 (task failed)"),
        ("1405", PredictionFailed, "1405"),
        ("5000", PredictionFailed, "5000 (provider internal error)"),
        ("5003", PredictionFailed, "5003 (provider unavailable)"),
        ("5004", PredictionFailed, "5004 (provider timeout)"),
        ("ModelUnavailable", PredictionFailed, "ModelUnavailable"),
        ("InternalServiceFailure", PredictionFailed, "InternalServiceFailure"),
        ("12000", PredictionFailed, "12000"),
        (None, PredictionFailed, "provider reported failure without a reason"),
        ("", PredictionFailed, "provider reported failure without a reason"),
    ],
)
def test_failure_error_table(text: str | None, cls: type, fragment: str) -> None:
    error = failure_error(parse(status="failed", error=text))
    assert type(error) is cls
    assert fragment in error.message
    assert error.status_code is None
    assert type(error_for_failure_text(text or None)) is cls


def test_numeric_error_sent_as_a_number() -> None:
    assert isinstance(failure_error(parse(status="failed", error=1402)), InvalidRequest)


def test_completed_without_outputs_is_no_output() -> None:
    prediction = parse(status="completed", outputs=[])
    assert not prediction.has_outputs
    error = failure_error(prediction)
    assert isinstance(error, NoOutput)
    assert PID in error.message


@pytest.mark.parametrize(
    ("status", "outputs"),
    [
        ("processing", []),
        ("completed", ["https://cdn/a.png"]),
    ],
)
def test_failure_error_refuses_predictions_that_did_not_fail(
    status: str, outputs: list[str]
) -> None:
    with pytest.raises(ValueError, match="not failed"):
        failure_error(parse(status=status, outputs=outputs))


def test_the_configured_key_is_scrubbed_whatever_its_shape() -> None:
    key = "gpk_live_7d1f0c2b9a8e4d6f5a3c"
    payload = envelope(status="failed", outputs=[], error=f"key {key} has no access")
    prediction = parse_prediction(payload, secret=key)
    assert prediction.error == "key *** has no access"


def test_an_answer_echoing_the_key_outside_its_error_is_refused() -> None:
    key = "gpk_live_7d1f0c2b9a8e4d6f5a3c"
    payload = envelope(outputs=[f"https://cdn.example.com/x.png?k={key}"])
    with pytest.raises(ProviderProtocolError, match="echoes the API key"):
        parse_prediction(payload, secret=key)
