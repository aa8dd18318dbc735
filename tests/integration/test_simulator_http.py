"""The simulator over real HTTP: contract endpoints, fault tokens, admin API.

One server serves the whole module (zero latency, so nothing waits); every test starts from a reset.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from simulator import RunningSimulator, SimulatorConfig, instant_latency, serve_in_thread
from simulator.config import LatencyRange

pytestmark = pytest.mark.integration

SUBMIT = "/api/v3/vidu/viduq2/text-to-image"
KEY = "sk-test-0123456789"
HEX32 = re.compile(r"[0-9a-f]{32}")


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_767_225_600.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def server() -> Iterator[RunningSimulator]:
    config = SimulatorConfig(latency=instant_latency(), queue_s=0, ghost_delay_s=5)
    with serve_in_thread(config) as running:
        yield running


@pytest.fixture
def client(server: RunningSimulator) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=5) as http:
        http.post("/_sim/reset").raise_for_status()
        yield http


def submit(client: httpx.Client, prompt: str, **fields: Any) -> httpx.Response:
    return client.post(SUBMIT, json={"prompt": prompt, **fields})


def created(client: httpx.Client, prompt: str, **fields: Any) -> str:
    response = submit(client, prompt, **fields)
    assert response.status_code == 200, response.text
    prediction_id: str = response.json()["data"]["id"]
    return prediction_id


def poll(client: httpx.Client, prediction_id: str) -> httpx.Response:
    return client.get(f"/api/v3/predictions/{prediction_id}/result")


def result(client: httpx.Client, prompt: str, **fields: Any) -> dict[str, Any]:
    response = poll(client, created(client, prompt, **fields))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def admin(client: httpx.Client, path: str) -> Any:
    response = client.get(f"/_sim/{path}")
    response.raise_for_status()
    return response.json()


def decode(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as picture:
        picture.verify()
        return picture.size


# --- the happy path ---------------------------------------------------------------------------


def test_submit_poll_download(client: httpx.Client) -> None:
    answer = submit(client, "a red fox at dawn", aspect_ratio="16:9", resolution="2k", seed=42)

    assert answer.status_code == 200
    body = answer.json()
    assert body["code"] == 200 and body["message"] == "success"
    data = body["data"]
    assert HEX32.fullmatch(data["id"]) and data["model"] == "viduq2"
    assert data["status"] == "created" and data["outputs"] == [] and data["error"] is None
    assert data["urls"]["get"].endswith(f"/api/v3/predictions/{data['id']}/result")
    assert data["executionTime"] == 0 and data["timings"] == {"inference": 0}
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", data["created_at"])

    done = client.get(data["urls"]["get"]).json()["data"]
    assert done["status"] == "completed" and done["has_nsfw_contents"] == [False]
    assert len(done["outputs"]) == 1

    image = httpx.get(done["outputs"][0])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert int(image.headers["content-length"]) == len(image.content)
    assert decode(image.content) == (2560, 1440)
    assert httpx.get(done["outputs"][0]).content == image.content


def test_status_progresses_with_the_clock() -> None:
    clock = FakeClock()
    config = SimulatorConfig(queue_s=1, latency={"1080p": LatencyRange(2, 2)})
    with (
        serve_in_thread(config, clock=clock) as running,
        httpx.Client(base_url=running.base_url, headers={"Authorization": KEY}, timeout=5) as http,
    ):
        prediction_id = created(http, "a slow one")
        statuses = []
        for _ in range(4):
            statuses.append(poll(http, prediction_id).json()["data"]["status"])
            clock.now += 1

        record = http.get(f"/_sim/predictions/{prediction_id}").json()

    assert statuses == ["created", "processing", "processing", "completed"]
    assert record["completed_at"] == clock.now - 1
    assert record["first_done_poll_at"] == clock.now - 1
    assert record["polls"] == 4


# --- keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [KEY, f"Bearer {KEY}", f"bearer {KEY}"])
def test_raw_and_bearer_keys(client: httpx.Client, header: str) -> None:
    answer = client.post(SUBMIT, json={"prompt": "x"}, headers={"Authorization": header})

    assert answer.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": "Bearer pk-nope"}],
)
def test_missing_or_invalid_key_is_401(server: RunningSimulator, headers: dict[str, str]) -> None:
    for answer in (
        httpx.post(f"{server.base_url}{SUBMIT}", json={"prompt": "x"}, headers=headers),
        httpx.get(f"{server.base_url}/api/v3/predictions/{'0' * 32}/result", headers=headers),
    ):
        assert answer.status_code == 401
        assert set(answer.json()["error"]) == {"message", "type"}


def test_revoking_a_key_at_run_time(client: httpx.Client) -> None:
    prediction_id = created(client, "before")

    client.post("/_sim/config", json={"revoked_keys": [KEY]}).raise_for_status()

    assert submit(client, "after").status_code == 401
    assert poll(client, prediction_id).status_code == 401
    assert KEY not in client.get("/_sim/config").text


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"prompt": ""},
        {"prompt": "x" * 2001},
        {"prompt": "x", "aspect_ratio": "5:4"},
        {"prompt": "x", "seed": 0},
        {"prompt": "x", "images": ["http://insecure.test/a.png"]},
        {"prompt": "x [sim:no_such_fault]"},
    ],
)
def test_invalid_submits_are_400(client: httpx.Client, fields: dict[str, Any]) -> None:
    answer = client.post(SUBMIT, json=fields)

    assert answer.status_code == 400
    assert set(answer.json()["error"]) == {"message", "type"}
    assert admin(client, "stats")["predictions_total"] == 0


def test_unknown_prediction_is_404(client: httpx.Client) -> None:
    assert poll(client, "f" * 32).status_code == 404


# --- submit faults -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "status", "html", "retry_after"),
    [
        ("http_401", 401, False, None),
        ("http_403", 403, False, None),
        ("http_429", 429, False, None),
        ("http_429=3", 429, False, "3"),
        ("http_429_retry_after", 429, False, "1"),
        ("http_500", 500, False, None),
        ("http_500=html", 500, True, None),
        ("http_502", 502, True, None),
        ("http_503", 503, False, None),
        ("http_504", 504, True, None),
        ("content_policy", 400, False, None),
        ("invalid_params", 400, False, None),
    ],
)
def test_submit_faults(
    client: httpx.Client, token: str, status: int, html: bool, retry_after: str | None
) -> None:
    answer = submit(client, f"a cat [sim:{token}]")

    assert answer.status_code == status
    assert answer.headers.get("retry-after") == retry_after
    if html:
        assert answer.headers["content-type"].startswith("text/html")
    else:
        assert set(answer.json()["error"]) == {"message", "type"}
    assert admin(client, "stats")["predictions_total"] == 0
    (entry,) = admin(client, "requests?kind=submit")["requests"]
    assert entry["status"] == status and entry["faults"] == [token.split("=")[0]]


def test_content_policy_matches_the_contract(client: httpx.Client) -> None:
    answer = submit(client, "[sim:content_policy]")

    assert answer.json() == {
        "error": {"message": "Input may not meet the guidelines", "type": "503"}
    }


# --- ghost tasks -------------------------------------------------------------------------------


def test_ghost_500_creates_the_prediction(client: httpx.Client) -> None:
    answer = submit(client, "ghost [sim:ghost_500=502]")

    assert answer.status_code == 502
    (prediction,) = admin(client, "predictions")["predictions"]
    assert prediction["prompt"] == "ghost [sim:ghost_500=502]"
    assert admin(client, "stats")["predictions_per_prompt"] == {"ghost [sim:ghost_500=502]": 1}


def test_ghost_slow_outlives_the_client_timeout(client: httpx.Client) -> None:
    with pytest.raises(httpx.ReadTimeout):
        client.post(SUBMIT, json={"prompt": "slow ghost [sim:ghost_slow=3]"}, timeout=0.3)

    (prediction,) = admin(client, "predictions")["predictions"]
    assert prediction["faults"] == {"ghost_slow": "3"}
    (entry,) = admin(client, "requests?kind=submit")["requests"]
    assert entry["prediction_id"] == prediction["id"]


# --- outcomes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["CreationPolicyViolation", "ModelUnavailable", "1200"])
def test_failed_with_error_text(client: httpx.Client, text: str) -> None:
    data = result(client, f"x [sim:failed={text}]")

    assert data["status"] == "failed" and data["error"] == text and data["outputs"] == []


def test_failed_without_text_still_explains(client: httpx.Client) -> None:
    assert result(client, "x [sim:failed]")["error"]


def test_stuck_stays_processing(client: httpx.Client) -> None:
    prediction_id = created(client, "x [sim:stuck]")

    for _ in range(3):
        assert poll(client, prediction_id).json()["data"]["status"] == "processing"


def test_completed_without_outputs(client: httpx.Client) -> None:
    data = result(client, "x [sim:no_output]")

    assert data["status"] == "completed" and data["outputs"] == []


def test_nsfw_flag(client: httpx.Client) -> None:
    assert result(client, "x [sim:nsfw]")["has_nsfw_contents"] == [True]


def test_multi_output_all_download(client: httpx.Client) -> None:
    data = result(client, "x [sim:multi_output=3]", aspect_ratio="9:16")

    assert len(data["outputs"]) == 3 and len(set(data["outputs"])) == 3
    contents = [httpx.get(url).content for url in data["outputs"]]
    assert all(decode(content) == (1080, 1920) for content in contents)
    assert len(set(contents)) == 3


@pytest.mark.parametrize(("token", "status"), [("poll_500=2", 500), ("poll_429", 429)])
def test_transient_poll_errors(client: httpx.Client, token: str, status: int) -> None:
    prediction_id = created(client, f"x [sim:{token}]")
    failures = 2 if "=2" in token else 1

    codes = [poll(client, prediction_id).status_code for _ in range(failures + 1)]

    assert codes == [status] * failures + [200]


# --- schema drift ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "field", "expected"),
    [
        ("urls_list", "urls", lambda value: isinstance(value, list) and "get" in value[0]),
        ("error_empty", "error", lambda value: value == ""),
        (
            "date_rfc3339",
            "created_at",
            lambda value: re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", value),
        ),
        ("nsfw_null", "has_nsfw_contents", lambda value: value is None),
        ("nsfw_empty", "has_nsfw_contents", lambda value: value == []),
        ("status_alias", "status", lambda value: value == "success"),
        ("status_alias=b", "status", lambda value: value == "succeeded"),
    ],
)
def test_schema_drift(client: httpx.Client, token: str, field: str, expected: Any) -> None:
    assert expected(result(client, f"drift [sim:{token}]")[field])


def test_submit_may_answer_processing(client: httpx.Client) -> None:
    answer = submit(client, "x [sim:submit_processing] [sim:status_alias]")

    assert answer.json()["data"]["status"] == "in_progress"


# --- outputs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "status"), [("output_expired", 404), ("output_expired=403", 403)]
)
def test_expired_outputs(client: httpx.Client, token: str, status: int) -> None:
    url = result(client, f"x [sim:{token}]")["outputs"][0]

    assert httpx.get(url).status_code == status


def test_truncated_then_whole(client: httpx.Client) -> None:
    url = result(client, "x [sim:output_truncated]")["outputs"][0]

    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url)
    assert decode(httpx.get(url).content) == (1440, 1440)
    assert admin(client, "stats")["downloads_per_prediction"] == {url.split("/")[4]: 2}


def test_mislabelled_content_type(client: httpx.Client) -> None:
    url = result(client, "x [sim:output_mislabelled=text/html]")["outputs"][0]

    image = httpx.get(url)

    assert image.headers["content-type"].startswith("text/html")
    assert decode(image.content) == (1440, 1440)


def test_slow_output_trickles(client: httpx.Client) -> None:
    url = result(client, "x [sim:output_slow=400000]")["outputs"][0]
    started = time.monotonic()

    image = httpx.get(url)

    # A lower bound only: the bytes cannot arrive faster than the throttle lets them.
    assert time.monotonic() - started >= 0.8 * len(image.content) / 400_000
    assert decode(image.content) == (1440, 1440)


def test_tampered_or_unknown_output_urls(client: httpx.Client) -> None:
    url = result(client, "x")["outputs"][0]

    assert httpx.get(url[:-4] + "0000").status_code == 403
    assert httpx.get(url.split("?")[0]).status_code == 403
    assert httpx.get(url.replace("/0.png", "/1.png")).status_code == 404


def test_outputs_on_another_host(client: httpx.Client, server: RunningSimulator) -> None:
    other = f"http://localhost:{server.port}"
    client.post("/_sim/config", json={"output_base_url": other}).raise_for_status()

    url = result(client, "elsewhere")["outputs"][0]

    assert url.startswith(f"{other}/outputs/")
    assert httpx.get(url).status_code == 200


def test_admin_record_links_the_served_outputs(client: httpx.Client) -> None:
    data = result(client, "recorded [sim:multi_output=2]")

    record = admin(client, f"predictions/{data['id']}")

    assert record["status"] == "completed" and record["completed_at"] <= time.time()
    assert record["outputs"] == data["outputs"]
    assert record["params"] == {
        "prompt": "recorded [sim:multi_output=2]",
        "aspect_ratio": "1:1",
        "resolution": "1080p",
        "seed": 1,
        "image_count": 0,
    }
    assert httpx.get(record["outputs"][1]).content == httpx.get(data["outputs"][1]).content


def test_noisy_pictures_are_large(client: httpx.Client) -> None:
    client.post("/_sim/config", json={"noise": True}).raise_for_status()

    url = result(client, "static", aspect_ratio="16:9")["outputs"][0]

    assert len(httpx.get(url).content) > 1920 * 1080 * 3


# --- run profile and admin API -----------------------------------------------------------------


def test_profile_applies_to_every_submit_until_reset(client: httpx.Client) -> None:
    client.post("/_sim/config", json={"profile": "http_503=1"}).raise_for_status()

    assert submit(client, "x").status_code == 503

    client.post("/_sim/reset").raise_for_status()
    assert submit(client, "x").status_code == 200


def test_a_poll_outage_answers_every_poll_until_it_is_cleared(client: httpx.Client) -> None:
    # Given a prediction, and the query service going down at run time
    prediction_id = created(client, "during the outage")
    client.post("/_sim/config", json={"poll_outage_status": 503}).raise_for_status()
    # Then every poll is answered 503 while submits still work
    assert [poll(client, prediction_id).status_code for _ in range(3)] == [503] * 3
    assert submit(client, "still accepted").status_code == 200
    # And once it is cleared, the prediction answers again
    client.post("/_sim/config", json={"poll_outage_status": None}).raise_for_status()
    assert poll(client, prediction_id).status_code == 200


def test_bad_config_changes_are_400(client: httpx.Client) -> None:
    for change in (
        {"profile": "bogus=1"},
        {"latency": ["8K=1"]},
        {"queue_s": -1},
        {"nope": 1},
        {"poll_outage_status": 404},
    ):
        answer = client.post("/_sim/config", json=change)
        assert answer.status_code == 400, change
        assert answer.json()["error"]["type"] == "invalid_config"


def test_request_log_and_stats(client: httpx.Client) -> None:
    first = created(client, "same prompt")
    created(client, "same prompt")
    submit(client, "same prompt [sim:http_500]")
    poll(client, first)
    poll(client, first)

    stats = admin(client, "stats")
    log = admin(client, "requests")["requests"]

    assert stats["submissions_per_prompt"] == {"same prompt": 2, "same prompt [sim:http_500]": 1}
    assert stats["predictions_per_prompt"] == {"same prompt": 2}
    assert stats["polls_per_prediction"] == {first: 2}
    assert stats["requests_by_kind"]["submit"] == {"200": 2, "500": 1}
    assert [entry["kind"] for entry in log] == ["submit"] * 3 + ["poll"] * 2
    assert [entry["seq"] for entry in admin(client, "requests?since=3")["requests"]] == [4, 5]
    assert len(admin(client, f"requests?prediction_id={first}")["requests"]) == 3
    assert KEY not in client.get("/_sim/requests").text


def test_fault_catalogue(client: httpx.Client) -> None:
    catalogue = admin(client, "faults")

    names = {fault["name"] for fault in catalogue["faults"]}
    assert {"ghost_500", "output_truncated", "status_alias"} <= names
    assert "flaky" in catalogue["presets"]


def test_unknown_admin_prediction_is_404(client: httpx.Client) -> None:
    assert client.get(f"/_sim/predictions/{'0' * 32}").status_code == 404
