"""A small malicious provider on 127.0.0.1, and an internal service it tries to reach.

:class:`HostileProvider` speaks the provider's two calls (submit, result) well enough for the
worker, then answers whatever the test scripted for the job's prompt: output URLs pointing at
internal services, redirects to loopback, downloads that drip a byte at a time, PNGs declaring
20000x20000 pixels, hundreds of outputs, error text that echoes the API key it was sent.
It serves those outputs itself under ``/out/``. :class:`InternalService` stands for what an
attacker wants to reach (a metadata endpoint, an admin port): it counts every request.
Everything listens on 127.0.0.1 only; no name is ever resolved.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image

SUBMIT_PATH = "/api/v3/vidu/viduq2/text-to-image"


def png_bytes(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 90)).save(out, "PNG")
    return out.getvalue()


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A small, well-formed PNG declaring ``width`` x ``height`` pixels of one colour: a few
    hundred KB on the wire, gigabytes once decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    row = b"\x00" + bytes((width + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


@dataclass
class Script:
    """What the provider answers for one prompt once its prediction is done."""

    outputs: list[str] = field(default_factory=list)
    error: str | None = None  # answer ``failed`` with this text (``{key}``: the key it got)


@dataclass
class Prediction:
    script: Script
    key: str


class HostileProvider:
    """The provider's API, answering what :meth:`script` set up for each prompt."""

    def __init__(self) -> None:
        self.scripts: dict[str, Script] = {}
        self.predictions: dict[str, Prediction] = {}
        self.output_hits: dict[str, int] = {}
        self.lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                if urlsplit(self.path).path != SUBMIT_PATH:
                    return self._json(404, {"code": 404, "message": "no such endpoint"})
                key = self.headers.get("Authorization", "").removeprefix("Bearer ")
                return self._json(200, {"data": provider.submit(body.get("prompt", ""), key)})

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path.startswith("/out/"):
                    return provider.serve_output(self, parts.path, parse_qs(parts.query))
                if parts.path.startswith("/api/v3/predictions/"):
                    prediction_id = parts.path.split("/")[4]
                    return self._json(200, {"data": provider.result(prediction_id)})
                return self._json(404, {"code": 404, "message": "not found"})

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.netloc = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.netloc}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # --- scripting -------------------------------------------------------------------------------

    def script(self, *, outputs: list[str] | None = None, error: str | None = None) -> str:
        """A fresh prompt whose prediction ends as scripted."""
        prompt = f"hostile {uuid.uuid4().hex[:10]}"
        self.scripts[prompt] = Script(outputs=list(outputs or []), error=error)
        return prompt

    def out(self, name: str, **query: str) -> str:
        """The URL of one of the outputs this server serves itself."""
        suffix = "&".join(f"{k}={v}" for k, v in query.items())
        return f"{self.url}/out/{name}" + (f"?{suffix}" if suffix else "")

    def hits(self, name: str) -> int:
        with self.lock:
            return self.output_hits.get(name, 0)

    # --- the provider's two calls ----------------------------------------------------------------

    def submit(self, prompt: str, key: str) -> dict[str, Any]:
        prediction_id = uuid.uuid4().hex
        script = self.scripts.get(prompt, Script(outputs=[self.out("good.png")]))
        self.predictions[prediction_id] = Prediction(script, key)
        return {"id": prediction_id, "status": "created", "outputs": []}

    def result(self, prediction_id: str) -> dict[str, Any]:
        prediction = self.predictions.get(prediction_id)
        if prediction is None:
            return {"id": prediction_id, "status": "failed", "error": "unknown prediction"}
        script = prediction.script
        if script.error is not None:
            error = script.error.format(key=prediction.key)
            return {"id": prediction_id, "status": "failed", "error": error, "outputs": []}
        return {"id": prediction_id, "status": "completed", "outputs": script.outputs}

    # --- the outputs it serves -------------------------------------------------------------------

    def serve_output(
        self, handler: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]
    ) -> None:
        name = path.removeprefix("/out/")
        with self.lock:
            self.output_hits[name] = self.output_hits.get(name, 0) + 1
        if name == "redirect":
            handler.send_response(302)
            handler.send_header("Location", query["to"][0])
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if name == "drip":  # one byte every half second, for as long as the client listens
            data = png_bytes()
            handler.send_response(200)
            handler.send_header("Content-Type", "image/png")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            try:
                for byte in data:
                    handler.wfile.write(bytes([byte]))
                    handler.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                pass
            return
        data = bomb_png() if name == "bomb.png" else png_bytes()
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def __enter__(self) -> HostileProvider:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class InternalService:
    """A service on 127.0.0.1 that must never be reached through the worker: counts requests."""

    def __init__(self) -> None:
        self.requests = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service.requests += 1
                data = png_bytes(8, 8)  # even a valid image must not be fetched
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> InternalService:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
