"""Helpers for the producer-side tests: the real HTTP API in a thread, a webhook receiver, the
README's signature recipe, and row counts of every table."""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import text

from tests.conftest import ROOT
from tests.harness import free_port, start_imagegen, stop_process, wait_http

TOKEN = "test-token-0b1c2d3e-4f5a6b7c8d9e0f1a2b"
OTHER_TOKEN = "other-token-1234-5678-9abc-def0-1234"
WEBHOOK_SECRET = "whsec-test-9f8e7d6c5b4a"
#: What a test process sets to run the API and receive webhooks on 127.0.0.1 over http.
PRODUCER_ENV = {
    "IMAGEGEN_API_TOKENS": f"{OTHER_TOKEN},{TOKEN}",
    "IMAGEGEN_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "IMAGEGEN_ALLOW_PRIVATE_URLS": "true",
    "IMAGEGEN_ALLOW_HTTP_CALLBACKS": "true",
    "IMAGEGEN_WEBHOOK_RETRY_BASE_S": "0.2",
    "IMAGEGEN_WEBHOOK_RETRY_MAX_S": "1",
}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TABLES = ("jobs", "job_events", "job_images", "batches", "webhook_deliveries", "webhook_attempts")


def configure(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    """Add the producer settings to a ``configured`` process."""
    from worker.core.settings import reset_settings

    for key, value in {**PRODUCER_ENV, **extra}.items():
        monkeypatch.setenv(key, value)
    reset_settings()


@contextmanager
def running_api() -> Iterator[str]:
    """The real app behind uvicorn on a free port, in a thread of this process."""
    from api.app import create_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@contextmanager
def api_process(env: dict[str, str], log: Path) -> Iterator[str]:
    """A real `imagegen api` process on a free port with ``env`` (its settings are read at
    start): what another service talks to."""
    port = free_port()
    proc = start_imagegen(env, log, "api", "--host", "127.0.0.1", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz")
        yield url
    finally:
        stop_process(proc)


def row_counts() -> dict[str, int]:
    from worker.db.engine import get_engine

    with get_engine().connect() as conn:
        return {
            table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in TABLES
        }


def readme_verifier() -> Callable[..., bool]:
    """``verify_webhook`` exactly as the README documents it."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    recipe = next(block for block in blocks if "def verify_webhook" in block)
    namespace: dict[str, Any] = {}
    exec(compile(recipe, "README.md", "exec"), namespace)
    verify: Callable[..., bool] = namespace["verify_webhook"]
    return verify


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def event(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result


class WebhookReceiver:
    """An http.server on 127.0.0.1 that records every POST; answers from ``replies`` (a
    status per request, in order), then 200."""

    def __init__(self, replies: list[int] | None = None) -> None:
        self.received: queue.Queue[Received] = queue.Queue()
        self.replies = list(replies or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver.received.put(Received(self.path, dict(self.headers.items()), body))
                status = receiver.replies.pop(0) if receiver.replies else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def take(self, count: int, timeout_s: float) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        found = []
        while len(found) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"got {len(found)} of {count} webhook requests in {timeout_s} s")
            try:
                found.append(self.received.get(timeout=remaining))
            except queue.Empty:
                continue
        return found
