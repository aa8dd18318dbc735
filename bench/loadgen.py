"""A bounded load generator: ``clients`` concurrent callers, each sending its next request
when its previous one is answered, for ``seconds`` (closed loop: the load never exceeds
``clients`` requests in flight, so a slow server is measured, not buried).

One asyncio loop with one httpx client in the benchmark process, the same for the API and its
baseline; it takes CPU from the same cores as the servers, which the ratio cancels.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

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
    return asyncio.run(_run(url, body, clients, seconds, headers or {}))


async def _run(
    url: str, body: dict[str, Any], clients: int, seconds: float, headers: dict[str, str]
) -> Load:
    load = Load()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30, headers=headers) as client:
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(_caller(client, url, body, deadline, load) for _ in range(clients)))
        load.seconds = time.perf_counter() - started
    return load


async def _caller(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], deadline: float, load: Load
) -> None:
    while time.perf_counter() < deadline:
        sent = time.perf_counter()
        try:
            response = await client.post(url, json=body)
        except httpx.HTTPError as exc:
            load.statuses[type(exc).__name__] += 1
            continue
        load.statuses[str(response.status_code)] += 1
        if response.is_success:
            load.latencies_s.append(time.perf_counter() - sent)
