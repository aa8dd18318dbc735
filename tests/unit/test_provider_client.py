"""What the client sends, what it returns, and how it is configured."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from worker.core.errors import ConfigurationError, PredictionNotFound, ProviderUnreachable
from worker.core.settings import Settings
from worker.provider.client import RESULT, SUBMIT, ProviderClient
from worker.provider.wire import PredictionState

KEY = "sk-SECRET-do-not-log"
PID = "0123456789abcdef0123456789abcdef"
BODY = {"prompt": "a lighthouse at dusk", "aspect_ratio": "16:9", "resolution": "2K", "seed": 7}


def prediction_json(status: str = "created", **fields: Any) -> dict[str, Any]:
    return {
        "code": 200,
        "message": "success",
        "data": {"id": PID, "status": status, "outputs": [], **fields},
    }


class Recorder:
    """A MockTransport handler that keeps every request and answers with one response."""

    def __init__(self, status: int = 200, payload: Any = None) -> None:
        self.requests: list[httpx.Request] = []
        self.status = status
        self.payload = prediction_json() if payload is None else payload

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json=self.payload)


def make_client(
    recorder: Recorder, base_url: str = "https://provider.test", **kwargs: Any
) -> ProviderClient:
    return ProviderClient(base_url, KEY, transport=httpx.MockTransport(recorder), **kwargs)


# --- requests -----------------------------------------------------------------------------------


def test_submit_posts_json_with_bearer_key() -> None:
    recorder = Recorder()
    prediction = make_client(recorder).submit(BODY)
    (request,) = recorder.requests
    assert request.method == "POST"
    assert str(request.url) == "https://provider.test/api/v3/vidu/viduq2/text-to-image"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == BODY
    assert (prediction.id, prediction.state) == (PID, PredictionState.PENDING)


def test_get_result_gets_the_result_path() -> None:
    recorder = Recorder(payload=prediction_json("completed", outputs=["https://cdn/a.png"]))
    prediction = make_client(recorder).get_result(PID)
    (request,) = recorder.requests
    assert request.method == "GET"
    assert str(request.url) == f"https://provider.test/api/v3/predictions/{PID}/result"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.content == b""
    assert prediction.outputs == ["https://cdn/a.png"]


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://provider.test/", "https://provider.test/api/v3/vidu/viduq2/text-to-image"),
        ("http://127.0.0.1:8080/gw", "http://127.0.0.1:8080/gw/api/v3/vidu/viduq2/text-to-image"),
    ],
)
def test_base_url_forms(base_url: str, expected: str) -> None:
    recorder = Recorder()
    make_client(recorder, base_url).submit(BODY)
    assert str(recorder.requests[0].url) == expected


def test_timeouts_differ_for_submit_and_poll() -> None:
    recorder = Recorder()
    client = make_client(recorder, connect_timeout_s=1.0, submit_timeout_s=20.0, poll_timeout_s=4.0)
    client.submit(BODY)
    client.get_result(PID)
    submit, poll = (request.extensions["timeout"] for request in recorder.requests)
    assert submit == {"connect": 1.0, "read": 20.0, "write": 20.0, "pool": 1.0}
    assert poll == {"connect": 1.0, "read": 4.0, "write": 4.0, "pool": 1.0}


@pytest.mark.parametrize("bad_id", ["", "../secrets", "a/b", "..", "a b", "x" * 200])
def test_unsafe_prediction_ids_are_refused_before_sending(bad_id: str) -> None:
    recorder = Recorder()
    with pytest.raises(PredictionNotFound, match="not a valid prediction id"):
        make_client(recorder).get_result(bad_id)
    assert recorder.requests == []


def test_submit_accepts_an_unknown_status_because_the_prediction_exists() -> None:
    prediction = make_client(Recorder(payload=prediction_json("warming_up"))).submit(BODY)
    assert (prediction.id, prediction.state) == (PID, PredictionState.PENDING)
    assert prediction.raw_status == "warming_up"


def test_submit_may_answer_a_finished_prediction() -> None:
    payload = prediction_json("failed", error="CreationPolicyViolation")
    prediction = make_client(Recorder(payload=payload)).submit(BODY)
    assert prediction.state is PredictionState.FAILED


# --- the on_response hook -----------------------------------------------------------------------


def test_on_response_hook_sees_every_call() -> None:
    calls: list[tuple[str, int | None, float]] = []
    client = make_client(Recorder(), on_response=lambda *args: calls.append(args))
    client.submit(BODY)
    client.get_result(PID)
    assert [(endpoint, status) for endpoint, status, _ in calls] == [(SUBMIT, 200), (RESULT, 200)]
    assert all(seconds >= 0 for _, _, seconds in calls)


def test_on_response_hook_sees_error_statuses_and_transport_failures() -> None:
    calls: list[tuple[str, int | None, float]] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = ProviderClient(
        "https://provider.test",
        KEY,
        transport=httpx.MockTransport(refuse),
        on_response=lambda *args: calls.append(args),
    )
    with pytest.raises(ProviderUnreachable):
        client.get_result(PID)
    assert [(endpoint, status) for endpoint, status, _ in calls] == [(RESULT, None)]


def test_a_failing_hook_never_fails_the_call(caplog: pytest.LogCaptureFixture) -> None:
    def broken(endpoint: str, status: int | None, seconds: float) -> None:
        raise RuntimeError("metrics backend down")

    with caplog.at_level(logging.ERROR, logger="worker.provider.client"):
        prediction = make_client(Recorder(), on_response=broken).submit(BODY)
    assert prediction.id == PID
    assert "provider_response_hook_failed" in caplog.text


# --- configuration and secrecy ------------------------------------------------------------------


@pytest.mark.parametrize("key", [KEY, SecretStr(KEY), f"  {KEY}\n", f"Bearer {KEY}"])
def test_key_forms_are_normalized(key: str | SecretStr) -> None:
    recorder = Recorder()
    client = ProviderClient("https://provider.test", key, transport=httpx.MockTransport(recorder))
    client.submit(BODY)
    assert recorder.requests[0].headers["Authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("key", ["", "   ", SecretStr(""), "sk-has space", "sk-é", "sk-a\nb"])
def test_unsendable_keys_are_refused_without_echo(key: str | SecretStr) -> None:
    with pytest.raises(ConfigurationError, match="GPTPROTO_API_KEY") as caught:
        ProviderClient("https://provider.test", key)
    assert "sk-" not in str(caught.value)


def test_repr_and_logs_never_show_the_key(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        client = make_client(Recorder())
        client.submit(BODY)
        client.get_result(PID)
    assert KEY not in repr(client)
    assert KEY not in str(vars(client))
    assert KEY not in caplog.text


def test_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPTPROTO_API_KEY", KEY)
    monkeypatch.setenv("GPTPROTO_BASE_URL", "https://sim.test/")
    recorder = Recorder()
    client = ProviderClient.from_settings(
        Settings(poll_timeout_s=3.0), transport=httpx.MockTransport(recorder)
    )
    client.get_result(PID)
    (request,) = recorder.requests
    assert str(request.url).startswith("https://sim.test/api/v3/predictions/")
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.extensions["timeout"]["read"] == 3.0


def test_from_settings_without_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPTPROTO_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="GPTPROTO_API_KEY is not set"):
        ProviderClient.from_settings(Settings())


def test_context_manager_closes_the_pool() -> None:
    with make_client(Recorder()) as client:
        client.submit(BODY)
    with pytest.raises(RuntimeError):
        client.submit(BODY)
