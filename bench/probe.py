"""Counts the database work of a process, for the benchmarks' "statements per job".

Enabled only in benchmark runs: ``bench/hooks/sitecustomize.py`` (on the ``PYTHONPATH`` of the
worker and beat processes a benchmark starts) calls :func:`install` when
``IMAGEGEN_BENCH_PROBE_DIR`` is set. The real ``imagegen worker`` then runs unchanged, with
SQLAlchemy event listeners counting every statement it sends (normalised, with the time until
its answer was read, GIL waits included), every commit and rollback, every pool checkout (each
costs a pre-ping round trip, sent outside the statement events) and every new connection, and
a Celery signal counting the tasks it runs by name. The counts are written to
``{dir}/{pid}.json`` twice a second and at exit; :func:`read_all` sums them.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import sys
import threading
import time
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any

ENV = "IMAGEGEN_BENCH_PROBE_DIR"
_DUMP_EVERY_S = 0.5
_PARAM = re.compile(r"%\(\w+\)s")
_LIST = re.compile(r"\?(?:, \?)+")
_KEY_CHARS = 140


class Probe:
    """Thread-safe counters of one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.statements: Counter[str] = Counter()
        self.seconds: dict[str, float] = defaultdict(float)
        self.events: Counter[str] = Counter()

    def statement(self, sql: str, seconds: float) -> None:
        key = statement_key(sql)
        with self._lock:
            self.statements[key] += 1
            self.seconds[key] += seconds

    def event(self, name: str) -> None:
        with self._lock:
            self.events[name] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "pid": os.getpid(),
                "argv": sys.argv[1:3],
                "statements": {
                    key: [count, round(self.seconds[key], 6)]
                    for key, count in self.statements.items()
                },
                "events": dict(self.events),
            }


@lru_cache(maxsize=4096)  # a process sends the same few dozen texts again and again
def statement_key(sql: str) -> str:
    """A statement without its parameters, whitespace or list lengths, cut to a readable
    length: the same query always gets the same key."""
    text = _LIST.sub("?…", _PARAM.sub("?", " ".join(sql.split())))
    return text if len(text) <= _KEY_CHARS else text[: _KEY_CHARS - 1] + "…"


def install(folder: Path) -> Probe:
    """Listen to every engine and pool of this process; dump the counts into ``folder``."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    probe = Probe()

    def before(conn: Any, _cursor: Any, _sql: str, *_: Any) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def after(conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        probe.statement(sql, time.perf_counter() - conn.info["bench_started"].pop())

    event.listen(Engine, "before_cursor_execute", before)
    event.listen(Engine, "after_cursor_execute", after)
    event.listen(Engine, "commit", lambda _conn: probe.event("commit"))
    event.listen(Engine, "rollback", lambda _conn: probe.event("rollback"))
    event.listen(Pool, "checkout", lambda *_: probe.event("checkout"))
    event.listen(Pool, "connect", lambda *_: probe.event("connect"))
    _count_tasks(probe)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{os.getpid()}.json"
    threading.Thread(
        target=_dump_forever, args=(probe, target), name="bench-probe", daemon=True
    ).start()
    atexit.register(_dump, probe, target)
    return probe


def _count_tasks(probe: Probe) -> None:
    from celery.signals import task_prerun

    def counted(sender: Any = None, **_: Any) -> None:
        probe.event(f"task:{getattr(sender, 'name', sender)}")

    task_prerun.connect(counted, weak=False)


def _dump_forever(probe: Probe, target: Path) -> None:
    while True:
        time.sleep(_DUMP_EVERY_S)
        _dump(probe, target)


def _dump(probe: Probe, target: Path) -> None:
    partial = target.with_suffix(".tmp")
    partial.write_text(json.dumps(probe.snapshot()))
    partial.replace(target)


def read_all(folder: Path) -> dict[str, Any]:
    """The counts of every probed process, summed."""
    statements: dict[str, list[float]] = {}
    events: Counter[str] = Counter()
    for path in folder.glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):  # being replaced right now: the next read has it
            continue
        for key, (count, seconds) in data["statements"].items():
            total = statements.setdefault(key, [0, 0.0])
            total[0] += count
            total[1] += seconds
        events.update(data["events"])
    return {"statements": statements, "events": dict(events)}


def difference(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """What happened between two :func:`read_all` readings."""
    statements = {}
    for key, (count, seconds) in after["statements"].items():
        was_count, was_seconds = before["statements"].get(key, (0, 0.0))
        if count - was_count:
            statements[key] = [count - was_count, seconds - was_seconds]
    events = {
        name: count - before["events"].get(name, 0) for name, count in after["events"].items()
    }
    return {"statements": statements, "events": events}
