"""The prediction JSON, its schema drift, error bodies, and output URL helpers."""

from __future__ import annotations

import json
import re
from functools import partial

import pytest

from simulator.outputs import OutputCache, UrlSigner, download_faults, expired_response
from simulator.state import Outcome, Prediction
from simulator.validation import SubmitParams
from simulator.wire import format_created_at, prediction_data, submit_error

CREATED = 1_767_225_600.123456  # 2026-01-01 00:00:00.123456 UTC
RFC3339_NANOS = re.compile(r"2026-01-01T00:00:00\.123456\d{3}Z")
RESULT_URL = "http://sim.test/api/v3/predictions/abc/result"


def prediction(
    faults: dict[str, str | None] | None = None, outcome: Outcome | None = None
) -> Prediction:
    return Prediction(
        id="0" * 32,
        seq=1,
        params=SubmitParams(prompt="x"),
        faults=faults or {},
        created_at=CREATED,
        processing_at=CREATED + 1,
        done_at=CREATED + 3.5,
        outcome=outcome or Outcome("completed"),
    )


def test_default_shape_while_created() -> None:
    data = prediction_data(prediction(), status="created", result_url=RESULT_URL, outputs=[])

    assert data == {
        "id": "0" * 32,
        "model": "viduq2",
        "status": "created",
        "outputs": [],
        "urls": {"get": RESULT_URL},
        "error": None,
        "executionTime": 0,
        "timings": {"inference": 0},
        "has_nsfw_contents": [],
        "created_at": "2026-01-01 00:00:00",
    }


def test_completed_fills_timings_and_nsfw_flags() -> None:
    data = prediction_data(prediction(), status="completed", result_url=RESULT_URL, outputs=["u1"])

    assert data["executionTime"] == 2500 and data["timings"] == {"inference": 2500}
    assert data["has_nsfw_contents"] == [False]


def test_failed_carries_the_error_text() -> None:
    failed = prediction(outcome=Outcome("failed", "ModelUnavailable", output_count=0))

    data = prediction_data(failed, status="failed", result_url=RESULT_URL, outputs=[])

    assert data["status"] == "failed" and data["error"] == "ModelUnavailable"


@pytest.mark.parametrize(
    ("faults", "field", "expected"),
    [
        ({"urls_list": None}, "urls", [{"get": RESULT_URL}]),
        ({"error_empty": None}, "error", ""),
        ({"date_rfc3339": None}, "created_at", RFC3339_NANOS),
        ({"nsfw_null": None}, "has_nsfw_contents", None),
        ({"nsfw_empty": None}, "has_nsfw_contents", []),
        ({"status_alias": None}, "status", "success"),
        ({"status_alias": "b"}, "status", "succeeded"),
    ],
)
def test_schema_drift(faults: dict[str, str | None], field: str, expected: object) -> None:
    data = prediction_data(
        prediction(faults), status="completed", result_url=RESULT_URL, outputs=["u1"]
    )

    if isinstance(expected, re.Pattern):
        assert expected.fullmatch(data[field])
    else:
        assert data[field] == expected


def test_nsfw_flags_every_output() -> None:
    flagged = prediction(outcome=Outcome("completed", output_count=2, nsfw=True))

    data = prediction_data(flagged, status="completed", result_url=RESULT_URL, outputs=["u1", "u2"])

    assert data["has_nsfw_contents"] == [True, True]


def test_rfc3339_has_nanoseconds() -> None:
    assert format_created_at(1_767_225_600.5, rfc3339=True) == "2026-01-01T00:00:00.500000000Z"
    assert format_created_at(1_767_225_600.5, rfc3339=False) == "2026-01-01 00:00:00"


@pytest.mark.parametrize(
    ("name", "arg", "status", "html", "retry_after"),
    [
        ("http_401", None, 401, False, None),
        ("http_403", None, 403, False, None),
        ("http_429", None, 429, False, None),
        ("http_429", "7", 429, False, "7"),
        ("http_429_retry_after", None, 429, False, "1"),
        ("http_500", None, 500, False, None),
        ("http_500", "html", 500, True, None),
        ("http_502", None, 502, True, None),
        ("http_502", "json", 502, False, None),
        ("http_503", None, 503, False, None),
        ("http_504", None, 504, True, None),
        ("content_policy", None, 400, False, None),
        ("invalid_params", None, 400, False, None),
    ],
)
def test_submit_errors(
    name: str, arg: str | None, status: int, html: bool, retry_after: str | None
) -> None:
    response = submit_error(name, {name: arg})

    assert response.status_code == status
    assert response.headers.get("retry-after") == retry_after
    body = bytes(response.body)
    if html:
        assert body.startswith(b"<html>") and response.media_type == "text/html"
    else:
        assert set(json.loads(body)["error"]) == {"message", "type"}


def test_content_policy_body_matches_the_contract() -> None:
    body = json.loads(bytes(submit_error("content_policy", {"content_policy": None}).body))

    assert body == {"error": {"message": "Input may not meet the guidelines", "type": "503"}}


def test_signed_urls() -> None:
    signer = UrlSigner(b"secret")
    url = signer.url("http://cdn.test", "/outputs/abc/0.png", expires_at=2000.0)
    query = dict(part.split("=") for part in url.split("?")[1].split("&"))

    assert url.startswith("http://cdn.test/outputs/abc/0.png?Expires=2000&Signature=")
    assert signer.problem("/outputs/abc/0.png", query["Expires"], query["Signature"], 1999) is None
    assert "expired" in str(signer.problem("/outputs/abc/0.png", "2000", query["Signature"], 2001))
    assert signer.problem("/outputs/abc/1.png", "2000", query["Signature"], 0) is not None
    assert signer.problem("/outputs/abc/0.png", None, None, 0) is not None


def test_output_cache_evicts_least_recently_used() -> None:
    cache = OutputCache(max_bytes=10)
    renders: list[str] = []

    def render(key: str) -> bytes:
        renders.append(key)
        return key.encode() * 4

    for key in ["a", "b", "a", "c", "a", "b"]:
        assert cache.get_or_render(key, partial(render, key)) == key.encode() * 4

    assert renders == ["a", "b", "c", "b"]


@pytest.mark.parametrize(
    ("faults", "attempt", "expected"),
    [
        ({}, 1, []),
        ({"output_truncated": None}, 1, ["output_truncated"]),
        ({"output_truncated": None}, 2, []),
        (
            {"output_truncated": "always", "output_slow": None},
            9,
            ["output_slow", "output_truncated"],
        ),
        (
            {"output_expired": "403", "output_mislabelled": None},
            3,
            ["output_expired", "output_mislabelled"],
        ),
    ],
)
def test_download_faults(faults: dict[str, str | None], attempt: int, expected: list[str]) -> None:
    assert download_faults(faults, attempt) == expected


@pytest.mark.parametrize(("arg", "status"), [(None, 404), ("404", 404), ("403", 403), ("500", 404)])
def test_expired_outputs(arg: str | None, status: int) -> None:
    assert expired_response({"output_expired": arg}).status_code == status
