"""A bounded load generator: ``clients`` concurrent callers, each sending its next request
when its previous one is answered, for ``seconds`` (closed loop: the load never exceeds
``clients`` requests in flight, so a slow server is measured, not buried).

One asyncio loop in the benchmark process, the same for the API and its baseline, speaking
HTTP/1.1 over kept-alive connections with the request built once and only the status line
and ``Content-Length`` of each answer parsed: it takes CPU from the same cores as the servers,
so it is kept small (with an httpx client it took ~6 ms per request, more than the bare
endpoint itself, and bounded the baseline instead of the server).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bench import stats


@dataclass
class Load:
    """What one run of the generator saw."""

    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> int:
        return len(self.latencies_s)

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if not status.startswith("2"))

    @property
    def per_s(self) -> float:
        return stats.rate(self.ok, self.seconds)

    def latency_ms(self, q: float) -> float:
        return stats.percentile(self.latencies_s, q) * 1000 if self.latencies_s else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 2),
            "ok": self.ok,
            "per_s": round(self.per_s, 1),
            "statuses": dict(self.statuses),
            "p50_ms": round(self.latency_ms(50), 2),
            "p99_ms": round(self.latency_ms(99), 2),
        }


def run(
    url: str,
    body: dict[str, Any],
    *,
    clients: int,
    seconds: float,
    headers: dict[str, str] | None = None,
) -> Load:
    """POST ``body`` to ``url`` from ``clients`` callers for ``seconds``; only 2xx answers
    count as done (their latencies are kept), anything else is an error."""
    request = _request(url, json.dumps(body).encode(), headers or {})
    parts = urlsplit(url)
    return asyncio.run(_run(parts.hostname or "", parts.port or 80, request, clients, seconds))


def _request(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The whole HTTP/1.1 request, built once (kept-alive connections, JSON body)."""
    parts = urlsplit(url)
    lines = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _run(host: str, port: int, request: bytes, clients: int, seconds: float) -> Load:
    load = Load()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_caller(host, port, request, deadline, load) for _ in range(clients)))
    load.seconds = time.perf_counter() - started
    return load


async def _caller(host: str, port: int, request: bytes, deadline: float, load: Load) -> None:
    """One client: a kept-alive connection, opened again after an error or a close."""
    stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while time.perf_counter() < deadline:
        sent = time.perf_counter()
        try:
            stream = stream or await asyncio.open_connection(host, port)
            status, keep = await _exchange(*stream, request)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            load.statuses[type(exc).__name__] += 1
            _close(stream)
            stream = None
            continue
        load.statuses[status] += 1
        if status.startswith("2"):
            load.latencies_s.append(time.perf_counter() - sent)
        if not keep:
            _close(stream)
            stream = None
    _close(stream)


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[str, bool]:
    """Send the request, read the whole answer: its status and whether the connection stays."""
    writer.write(request)
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
    status = head.split(" ", 2)[1]
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status, "connection: close" not in head


def _close(
    stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
) -> None:
    if stream is not None:
        stream[1].close()
