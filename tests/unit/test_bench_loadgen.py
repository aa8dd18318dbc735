"""The load generator counts what a server answers (a local HTTP/1.1 server; no timing)."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from bench import loadgen


class Answers(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # kept-alive connections, as uvicorn's
    seen: ClassVar[list[dict]] = []
    count = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Answers.seen.append({"body": json.loads(body), "auth": self.headers["Authorization"]})
        Answers.count += 1
        status = 500 if Answers.count % 5 == 0 else 202
        answer = b'{"id": 1}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        if Answers.count % 7 == 0:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1/jobs"
    httpd.shutdown()
    httpd.server_close()


def test_every_answer_is_counted_and_only_2xx_is_done(server: str) -> None:
    Answers.seen.clear()
    Answers.count = 0
    load = loadgen.run(
        server, {"prompt": "p"}, clients=4, seconds=0.5, headers={"Authorization": "Bearer t"}
    )
    assert load.ok + load.statuses["500"] == Answers.count == len(Answers.seen) > 0
    assert load.errors == load.statuses["500"] > 0  # every fifth answer
    assert len(load.latencies_s) == load.statuses["202"]
    assert Answers.seen[0] == {"body": {"prompt": "p"}, "auth": "Bearer t"}


def test_a_refused_connection_is_an_error_not_a_crash() -> None:
    load = loadgen.run("http://127.0.0.1:9/v1/jobs", {}, clients=2, seconds=0.2)
    assert load.ok == 0 and load.errors > 0
