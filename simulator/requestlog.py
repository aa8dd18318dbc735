"""The request log: every provider request the simulator received, so tests can count them.

An ASGI middleware opens an entry when a request arrives (so a submit still waiting on a slow
answer is already counted) and records the status when the answer starts; handlers add the prompt,
the prediction id and the faults that applied (for a submit: every fault chosen for the prediction;
otherwise: those that acted on that request). Headers are never recorded: that keeps the API key
out of the log. Admin requests (``/_sim/``) are not logged, so observing does not change the counts.

Only the newest ``max_entries`` entries are kept (a 100k-job benchmark makes millions of polls);
the counts behind ``/_sim/stats`` are kept apart and stay exact.
"""

from __future__ import annotations

import re
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SUBMIT_PATH = "/api/v3/vidu/viduq2/text-to-image"
ADMIN_PREFIX = "/_sim/"
KINDS = ("submit", "poll", "download", "other")
_POLL = re.compile(r"^/api/v3/predictions/([^/]+)/result$")
_DOWNLOAD = re.compile(r"^/outputs/([^/]+)/[^/]+$")
_SCOPE_KEY = "simulator.log_entry"
DEFAULT_MAX_ENTRIES = 200_000


@dataclass(slots=True)
class LogEntry:
    """One received request. ``status`` is None while the answer has not started."""

    seq: int
    time: float
    kind: str
    method: str
    path: str
    status: int | None = None
    prompt: str | None = None
    prediction_id: str | None = None
    faults: list[str] = field(default_factory=list)
    #: Which reset generation the entry belongs to; a request that outlives a reset must not
    #: count in the fresh counts.
    epoch: int = field(default=0, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The entry as JSON."""
        public = asdict(self)
        del public["epoch"]
        return public


class RequestLog:
    """Thread-safe log of the newest entries, plus exact running counts."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self._lock = threading.Lock()
        self._entries: deque[LogEntry] = deque(maxlen=max_entries)
        self._counts = _Counts()
        self._epoch = 0

    def open(self, method: str, path: str, now: float) -> LogEntry:
        """Append an entry for a request that just arrived."""
        kind, prediction_id = classify(method, path)
        with self._lock:
            self._counts.total += 1
            entry = LogEntry(
                self._counts.total,
                now,
                kind,
                method,
                path,
                prediction_id=prediction_id,
                epoch=self._epoch,
            )
            self._entries.append(entry)
            self._counts.opened(entry)
            return entry

    def close(self, entry: LogEntry, status: int) -> None:
        """Record the status the request was answered with."""
        with self._lock:
            entry.status = status
            if entry.epoch == self._epoch:
                self._counts.by_kind[entry.kind][str(status)] += 1

    def note(
        self,
        entry: LogEntry | None,
        *,
        prompt: str | None = None,
        prediction_id: str | None = None,
        faults: Iterable[str] = (),
    ) -> None:
        """Add what the handler learned to the entry (no-op when the request is not logged)."""
        if entry is None:
            return
        with self._lock:
            if prompt is not None and entry.prompt is None:
                entry.prompt = prompt
                if entry.kind == "submit" and entry.epoch == self._epoch:
                    self._counts.submissions[prompt] += 1
            entry.prediction_id = prediction_id or entry.prediction_id
            entry.faults.extend(name for name in faults if name not in entry.faults)

    def entries(
        self, *, kind: str | None = None, prediction_id: str | None = None, since: int = 0
    ) -> list[dict[str, Any]]:
        """Kept entries as JSON, oldest first, filtered by kind, prediction id and seq > since."""
        with self._lock:
            return [
                entry.as_dict()
                for entry in self._entries
                if entry.seq > since
                and (kind is None or entry.kind == kind)
                and (prediction_id is None or entry.prediction_id == prediction_id)
            ]

    def submissions_of(self, prompt: str) -> int:
        """How many submits with this prompt were received so far (this one included)."""
        with self._lock:
            return self._counts.submissions[prompt]

    def counts(self) -> dict[str, Any]:
        """Counts for ``/_sim/stats``: per prompt, per prediction, per kind and status."""
        with self._lock:
            return self._counts.as_dict()

    def clear(self) -> None:
        """Forget every entry and count."""
        with self._lock:
            self._entries.clear()
            self._counts = _Counts()
            self._epoch += 1


@dataclass
class _Counts:
    total: int = 0
    submissions: Counter[str] = field(default_factory=Counter)
    polls: Counter[str] = field(default_factory=Counter)
    downloads: Counter[str] = field(default_factory=Counter)
    by_kind: dict[str, Counter[str]] = field(
        default_factory=lambda: {kind: Counter() for kind in KINDS}
    )

    def opened(self, entry: LogEntry) -> None:
        per_prediction = {"poll": self.polls, "download": self.downloads}.get(entry.kind)
        if per_prediction is not None and entry.prediction_id:
            per_prediction[entry.prediction_id] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "total_requests": self.total,
            "submissions_per_prompt": dict(self.submissions),
            "polls_per_prediction": dict(self.polls),
            "downloads_per_prediction": dict(self.downloads),
            "requests_by_kind": {kind: dict(counter) for kind, counter in self.by_kind.items()},
        }


def classify(method: str, path: str) -> tuple[str, str | None]:
    """The kind of a provider request and the prediction id its path names, if any."""
    if method == "POST" and path == SUBMIT_PATH:
        return "submit", None
    for kind, pattern in (("poll", _POLL), ("download", _DOWNLOAD)):
        match = pattern.match(path)
        if match and method in ("GET", "HEAD"):
            return kind, match.group(1)
    return "other", None


def entry_of(request: Request) -> LogEntry | None:
    """The log entry of the request being handled, if it is logged."""
    entry = request.scope.get(_SCOPE_KEY)
    return entry if isinstance(entry, LogEntry) else None


class RequestLogMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it would cancel slow handlers on disconnect)."""

    def __init__(self, app: ASGIApp, log: RequestLog, clock: Callable[[], float]) -> None:
        self.app, self.log, self.clock = app, log, clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Open an entry, then record the status when the answer starts."""
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        entry = self.log.open(scope["method"], scope["path"], self.clock())
        scope[_SCOPE_KEY] = entry

        async def send_and_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.log.close(entry, message["status"])
            await send(message)

        await self.app(scope, receive, send_and_record)
