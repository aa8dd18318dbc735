"""Bad input, through the HTTP API (422) and the CLI (exit 2): every case names the field and
the rule, and leaves every table exactly as it was."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BIN
from tests.producers import AUTH, configure, row_counts

pytestmark = pytest.mark.integration

STRICT = {"IMAGEGEN_ALLOW_PRIVATE_URLS": "false", "IMAGEGEN_ALLOW_HTTP_CALLBACKS": "false"}
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
HUGE_IMAGE = "data:image/png;base64," + "A" * (20 * 1024 * 1024)
JSONL = {"Content-Type": "application/x-ndjson"}
JSON = "application/json"


@pytest.fixture
def api(configured, monkeypatch: pytest.MonkeyPatch, api_url: str) -> Iterator[httpx.Client]:
    configure(monkeypatch, **STRICT)
    with httpx.Client(base_url=api_url, headers=AUTH, timeout=60) as client:
        yield client


def job(**fields: Any) -> dict[str, Any]:
    return {"json": {"prompt": "a cat", **fields}}


def lines(*objects: Any) -> bytes:
    return b"".join(
        (o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n" for o in objects
    )


API_CASES = [
    # (id, method, path, request kwargs, field, rule fragment)
    ("no body", "POST", "/v1/jobs", {}, "body", "Field required"),
    (
        "not json",
        "POST",
        "/v1/jobs",
        {"content": b"{nope", "headers": {"Content-Type": "application/json"}},
        "body",
        "not valid JSON",
    ),
    ("a list", "POST", "/v1/jobs", {"json": [{"prompt": "x"}]}, "body", "valid dictionary"),
    ("prompt missing", "POST", "/v1/jobs", {"json": {"seed": 3}}, "prompt", "Field required"),
    ("prompt empty", "POST", "/v1/jobs", job(prompt=""), "prompt", "at least 1 character"),
    ("prompt blank", "POST", "/v1/jobs", job(prompt="  \n "), "prompt", "must not be blank"),
    (
        "prompt too long",
        "POST",
        "/v1/jobs",
        job(prompt="x" * 2001),
        "prompt",
        "at most 2000 characters",
    ),
    ("prompt a number", "POST", "/v1/jobs", job(prompt=5), "prompt", "valid string"),
    ("prompt NUL", "POST", "/v1/jobs", job(prompt="a\x00b"), "prompt", "NUL characters"),
    ("images empty", "POST", "/v1/jobs", job(images=[]), "images", "at least 1 item"),
    ("images eight", "POST", "/v1/jobs", job(images=[PNG] * 8), "images", "at most 7 items"),
    ("images a string", "POST", "/v1/jobs", job(images=PNG), "images", "valid list"),
    (
        "image http",
        "POST",
        "/v1/jobs",
        job(images=["http://example.com/a.png"]),
        "images",
        "scheme must be https",
    ),
    (
        "image private",
        "POST",
        "/v1/jobs",
        job(images=["https://192.168.1.20/a.png"]),
        "images",
        "private, loopback",
    ),
    (
        "image loopback",
        "POST",
        "/v1/jobs",
        job(images=["https://127.0.0.1/a.png"]),
        "images",
        "private, loopback",
    ),
    (
        "image metadata",
        "POST",
        "/v1/jobs",
        job(images=["https://169.254.169.254/x"]),
        "images",
        "private",
    ),
    (
        "image data type",
        "POST",
        "/v1/jobs",
        job(images=["data:text/html;base64,PGI+"]),
        "images",
        "data URI must be",
    ),
    (
        "image base64",
        "POST",
        "/v1/jobs",
        job(images=["data:image/png;base64,@@@"]),
        "images",
        "valid base64",
    ),
    (
        "images too big",
        "POST",
        "/v1/jobs",
        job(images=[HUGE_IMAGE]),
        "body",
        "must be at most 20971520 bytes",
    ),
    ("ratio unknown", "POST", "/v1/jobs", job(aspect_ratio="5:4"), "aspect_ratio", "'16:9'"),
    ("ratio a number", "POST", "/v1/jobs", job(aspect_ratio=16), "aspect_ratio", "Input should"),
    ("resolution", "POST", "/v1/jobs", job(resolution="8K"), "resolution", "'1080p'"),
    ("seed zero", "POST", "/v1/jobs", job(seed=0), "seed", "greater than or equal to 1"),
    ("seed too big", "POST", "/v1/jobs", job(seed=2147483648), "seed", "less than or equal"),
    ("seed text", "POST", "/v1/jobs", job(seed="abc"), "seed", "valid integer"),
    ("seed fraction", "POST", "/v1/jobs", job(seed=1.5), "seed", "valid integer"),
    ("unknown field", "POST", "/v1/jobs", job(model="viduq1"), "model", "not a known field"),
    (
        "callback http",
        "POST",
        "/v1/jobs",
        job(callback_url="http://hooks.example.com/x"),
        "callback_url",
        "scheme must be https",
    ),
    (
        "callback private",
        "POST",
        "/v1/jobs",
        job(callback_url="https://10.1.2.3/hook"),
        "callback_url",
        "private, loopback",
    ),
    (
        "callback localhost",
        "POST",
        "/v1/jobs",
        job(callback_url="https://localhost:9/x"),
        "callback_url",
        "local or private",
    ),
    (
        "callback not a url",
        "POST",
        "/v1/jobs",
        job(callback_url="hooks"),
        "callback_url",
        "scheme must be https",
    ),
    ("ref too long", "POST", "/v1/jobs", job(ref="r" * 201), "ref", "at most 200"),
    ("ref NUL", "POST", "/v1/jobs", job(ref="r\x00"), "ref", "NUL characters"),
    ("deadline zero", "POST", "/v1/jobs", job(deadline_s=0), "deadline_s", "greater than 0"),
    (
        "idempotency key",
        "POST",
        "/v1/jobs",
        {**job(), "headers": {"Idempotency-Key": "k" * 201}},
        "Idempotency-Key",
        "at most 200",
    ),
    ("job id", "GET", "/v1/jobs/not-a-uuid", {}, "job_id", "must be a job id"),
    ("cancel id", "POST", "/v1/jobs/12/cancel", {}, "job_id", "must be a job id"),
    ("batch id", "GET", "/v1/batches/x/manifest", {}, "batch_id", "must be a batch id"),
    (
        "batch empty",
        "POST",
        "/v1/batches",
        {"content": b"\n\n", "headers": JSONL},
        "body",
        "at least one job",
    ),
    (
        "batch not json",
        "POST",
        "/v1/batches",
        {"content": b"[", "headers": {"Content-Type": "application/json"}},
        "body",
        "not valid JSON",
    ),
    ("batch no jobs", "POST", "/v1/batches", {"json": {"name": "n"}}, "jobs", "Field required"),
    (
        "batch jobs not list",
        "POST",
        "/v1/batches",
        {"json": {"jobs": {"prompt": "x"}}},
        "jobs",
        "must be a list",
    ),
    (
        "batch unknown",
        "POST",
        "/v1/batches",
        {"json": {"jobs": [{"prompt": "x"}], "when": 1}},
        "when",
        "not a known field",
    ),
    (
        "batch callback",
        "POST",
        "/v1/batches?callback_url=https://192.168.0.1/h",
        {"content": lines({"prompt": "x"}), "headers": JSONL},
        "callback_url",
        "private",
    ),
    (
        "batch name",
        "POST",
        "/v1/batches?name=" + "n" * 201,
        {"content": lines({"prompt": "x"}), "headers": JSONL},
        "name",
        "at most 200",
    ),
    # hostile producers: each of these was a 500 or a 400 (nothing was written either way)
    (
        "batch nested 100k deep",
        "POST",
        "/v1/batches",
        {"content": b"[" * 100_000 + b"]" * 100_000, "headers": {"Content-Type": JSON}},
        "body",
        "must not nest deeper than 32 levels",
    ),
    (
        "batch envelope nested deep",
        "POST",
        "/v1/batches",
        {"content": b'{"jobs": ' + b"[" * 40 + b"]" * 40 + b"}", "headers": {"Content-Type": JSON}},
        "body",
        "must not nest deeper than 32 levels",
    ),
    (
        "batch line nested deep",
        "POST",
        "/v1/batches",
        {"content": b"{}\n" + b"[" * 100_000 + b"]" * 100_000, "headers": JSONL},
        "json",
        "must not nest deeper than 32 levels",
    ),
    (
        "job nested deep",
        "POST",
        "/v1/jobs",
        {"content": b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"},
        "body",
        "must not nest deeper than 32 levels",
    ),
    (
        "pause nested deep",
        "POST",
        "/v1/fleet/pause",
        {"content": b"[" * 100_000 + b"]" * 100_000, "headers": {"Content-Type": JSON}},
        "body",
        "must not nest deeper than 32 levels",
    ),
    (
        "job not utf-8",
        "POST",
        "/v1/jobs",
        {"content": b'{"prompt": "caf\xe9"}', "headers": {"Content-Type": JSON}},
        "body",
        "must be UTF-8 (invalid byte at position 15)",
    ),
    (
        "batch not utf-8",
        "POST",
        "/v1/batches",
        {"content": b'[{"prompt": "\xff"}]', "headers": {"Content-Type": JSON}},
        "body",
        "must be UTF-8",
    ),
    (
        "pause reason NUL",
        "POST",
        "/v1/fleet/pause",
        {"json": {"reason": "maintenance\x00"}},
        "reason",
        "must not contain NUL characters",
    ),
    (
        "pause not utf-8",
        "POST",
        "/v1/fleet/pause",
        {"content": b'{"reason": "\xc3("}', "headers": {"Content-Type": JSON}},
        "body",
        "must be UTF-8",
    ),
    ("seed as text", "POST", "/v1/jobs", job(seed="12"), "seed", "valid integer"),
    ("seed as boolean", "POST", "/v1/jobs", job(seed=True), "seed", "valid integer"),
    ("seed as float", "POST", "/v1/jobs", job(seed=12.0), "seed", "valid integer"),
    ("deadline as text", "POST", "/v1/jobs", job(deadline_s="60"), "deadline_s", "valid number"),
    (
        "batch line seed as text",
        "POST",
        "/v1/batches",
        {"content": lines({"prompt": "x", "seed": "12"}), "headers": JSONL},
        "seed",
        "valid integer",
    ),
    (
        "batch list seed as boolean",
        "POST",
        "/v1/batches",
        {"json": [{"prompt": "x", "seed": True}]},
        "seed",
        "valid integer",
    ),
    (
        "batch name NUL",
        "POST",
        "/v1/batches",
        {"json": {"jobs": [{"prompt": "x"}], "name": "n\x00"}},
        "name",
        "NUL characters",
    ),
    (
        "batch line object",
        "POST",
        "/v1/batches",
        {"json": [{"prompt": "x"}, "y"]},
        "line",
        "must be a JSON object",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "field", "rule"),
    [case[1:] for case in API_CASES],
    ids=[case[0] for case in API_CASES],
)
def test_api_bad_input_is_422_naming_the_field(
    api: httpx.Client, method: str, path: str, kwargs: dict[str, Any], field: str, rule: str
) -> None:
    before = row_counts()
    reply = api.request(method, path, **kwargs)
    assert reply.status_code == 422, reply.text[:500]
    body = reply.json()
    assert body["code"] == "invalid_request"
    assert any(e["field"] == field and rule in e["rule"] for e in body["errors"]), body
    assert row_counts() == before


def test_a_batch_with_bad_lines_lists_them_all_and_writes_nothing(api: httpx.Client) -> None:
    before = row_counts()
    body = lines(
        {"prompt": "ok", "ref": "a"},
        {"prompt": ""},
        b"{broken",
        {"prompt": "x", "seed": 0, "resolution": "3K"},
        {"prompt": "dup", "ref": "a"},
        {"prompt": "x", "images": ["https://10.0.0.1/i.png"]},
        {"prompt": "ok again"},
    )
    reply = api.post("/v1/batches", content=body, headers=JSONL)
    assert reply.status_code == 422
    found = [(e["line"], e["field"]) for e in reply.json()["errors"]]
    assert found == [
        (2, "prompt"),
        (3, "json"),
        (4, "resolution"),
        (4, "seed"),
        (5, "ref"),
        (6, "images"),
    ]
    assert row_counts() == before


def test_unsupported_batch_content_type_is_415(api: httpx.Client) -> None:
    before = row_counts()
    reply = api.post(
        "/v1/batches",
        content=b"prompt=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert reply.status_code == 415 and reply.json()["errors"][0]["field"] == "content-type"
    assert row_counts() == before


# --- the CLI ------------------------------------------------------------------------------------


def run(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "imagegen"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env, **STRICT},
        timeout=60,
        check=False,
        input=stdin,
    )


def write(folder: Path, *objects: Any) -> str:
    path = folder / "batch.jsonl"
    path.write_bytes(lines(*objects))
    return str(path)


CLI_CASES = [
    (
        "bad lines",
        lambda d: [
            "batch",
            "submit",
            write(d, {"prompt": "ok"}, {"prompt": ""}, {"prompt": "x", "seed": -4}, b"[1"),
        ],
        [
            "line 2: prompt: String should have at least 1 character",
            "line 3: seed: Input should be greater than or equal to 1",
            "line 4: json: is not valid JSON",
            "3 bad line(s); nothing was enqueued",
        ],
    ),
    (
        "unknown field",
        lambda d: ["batch", "submit", write(d, {"prompt": "a", "size": 3})],
        ["line 1: size: is not a known field"],
    ),
    (
        "duplicate ref",
        lambda d: [
            "batch",
            "submit",
            write(d, {"prompt": "a", "ref": "r"}, {"prompt": "b", "ref": "r"}),
        ],
        ["line 2: ref: duplicates the ref of line 1"],
    ),
    (
        "empty file",
        lambda d: ["batch", "submit", write(d)],
        ["body: must contain at least one job"],
    ),
    (
        "missing file",
        lambda d: ["batch", "submit", str(d / "nope.jsonl")],
        ["file: cannot be read"],
    ),
    (
        "callback",
        lambda d: [
            "batch",
            "submit",
            write(d, {"prompt": "a"}),
            "--callback-url",
            "http://hooks.example.com/x",
        ],
        ["callback_url: scheme must be"],
    ),
    (
        "callback private",
        lambda d: [
            "batch",
            "submit",
            write(d, {"prompt": "a"}),
            "--callback-url",
            "https://127.0.0.1/x",
        ],
        ["callback_url: must not point to a private"],
    ),
    (
        "deadline",
        lambda d: ["batch", "submit", write(d, {"prompt": "a"}), "--deadline-s", "-1"],
        ["deadline_s: must be greater than 0"],
    ),
    ("status id", lambda d: ["batch", "status", "nope"], ["batch_id: must be a batch id"]),
    ("manifest id", lambda d: ["batch", "manifest", "12"], ["batch_id: must be a batch id"]),
    (
        "export id",
        lambda d: ["export", "--batch", "x", str(d / "out")],
        ["batch_id: must be a batch id"],
    ),
]


@pytest.mark.parametrize(
    ("args", "messages"), [case[1:] for case in CLI_CASES], ids=[case[0] for case in CLI_CASES]
)
def test_cli_bad_input_exits_2_naming_the_field(
    configured, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: Any, messages: list[str]
) -> None:
    # in this process (the same command code, without a second of start-up per case)
    from typer.testing import CliRunner

    from worker.cli.main import app

    configure(monkeypatch, **STRICT)
    before = row_counts()
    done = CliRunner().invoke(app, args(tmp_path))
    assert done.exit_code == 2, (done.stdout, done.stderr, done.exception)
    said = " ".join(done.stderr.split())
    for message in messages:
        assert message in said, done.stderr
    assert row_counts() == before


def test_cli_process_lists_bad_lines_and_exits_2(
    configured, service_env: dict[str, str], tmp_path: Path
) -> None:
    before = row_counts()
    done = run(
        service_env,
        "batch",
        "submit",
        write(tmp_path, {"prompt": ""}, {"prompt": "x"}, {"prompt": "y", "aspect_ratio": "1:2"}),
    )
    assert done.returncode == 2, done.stderr
    said = " ".join(done.stderr.split())
    assert "line 1: prompt: String should have at least 1 character" in said
    assert "line 3: aspect_ratio: Input should be" in said
    assert row_counts() == before


def test_cli_refuses_a_batch_over_the_size_limit(
    configured, service_env: dict[str, str], tmp_path: Path
) -> None:
    before = row_counts()
    env = {**service_env, "IMAGEGEN_BATCH_MAX_JOBS": "2"}
    done = run(env, "batch", "submit", "-", stdin=lines(*[{"prompt": "p"}] * 3).decode())
    assert done.returncode == 2
    assert "body: must contain at most 2 jobs" in done.stderr
    assert row_counts() == before


def test_unknown_batch_is_exit_1(configured, service_env: dict[str, str]) -> None:
    done = run(service_env, "batch", "status", str(uuid.uuid4()))
    assert done.returncode == 1 and "no batch with id" in done.stderr
