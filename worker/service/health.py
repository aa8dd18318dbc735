"""Readiness: can this process reach the database, the broker and the object store?

The three checks run side by side, each bounded by ``IMAGEGEN_READY_TIMEOUT_S``; a check that
has not answered by then counts as failed (its thread finishes on its own later). Error texts
are short and never carry credentials: passwords in URLs are masked.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from botocore import exceptions as botocore_exc
from sqlalchemy import exc as sqlalchemy_exc

from worker.blobs.storage import probe_bucket
from worker.core.settings import Settings
from worker.db.engine import session_scope
from worker.store import queue as queries

_POOL = ThreadPoolExecutor(max_workers=6, thread_name_prefix="readyz")
_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]+@")


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    seconds: float
    detail: str | None = None


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, CheckResult] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ok else "unavailable",
            "checks": {
                name: {
                    "ok": c.ok,
                    "ms": round(c.seconds * 1000, 1),
                    **({"detail": c.detail} if c.detail else {}),
                }
                for name, c in self.checks.items()
            },
        }


def readiness(settings: Settings) -> Readiness:
    """Run every check at once and wait at most the configured timeout."""
    checks: dict[str, Callable[[Settings], str | None]] = {
        "database": check_database,
        "broker": check_broker,
        "storage": check_storage,
    }
    started = time.perf_counter()
    futures = {name: _POOL.submit(check, settings) for name, check in checks.items()}
    wait(futures.values(), timeout=settings.ready_timeout_s)
    return Readiness(
        {
            name: _result(future, started, settings.ready_timeout_s)
            for name, future in futures.items()
        }
    )


def _result(future: Future[str | None], started: float, timeout_s: float) -> CheckResult:
    elapsed = time.perf_counter() - started
    if not future.done():
        return CheckResult(False, elapsed, f"no answer within {timeout_s:g} s")
    error = future.exception()
    if error is not None:
        return CheckResult(False, elapsed, describe(error))
    return CheckResult(True, elapsed, future.result())


def describe(error: BaseException) -> str:
    """``Type: first line of the message``, without passwords, at most 200 characters."""
    message = str(getattr(error, "orig", None) or error).strip().splitlines()
    text = f"{type(error).__name__}: {message[0] if message else ''}"
    return masked(text)[:200]


def masked(text: str) -> str:
    """``text`` with the password of any URL in it replaced by ``***``."""
    return _PASSWORD_IN_URL.sub(r"\1***@", text)


# --- the checks (each returns an optional note, or raises) ----------------------------------


def check_database(settings: Settings) -> str | None:
    with session_scope() as session:
        queries.limit_statement_time(session, settings.ready_timeout_s)
        queries.ping(session)
    return None


def check_broker(settings: Settings) -> str | None:
    url = settings.effective_broker_url
    if not url.startswith(("redis://", "rediss://")):
        return "embedded broker: not checked"
    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=settings.ready_timeout_s,
        socket_timeout=settings.ready_timeout_s,
    )
    try:
        client.ping()
    finally:
        client.close()
    return None


def check_storage(settings: Settings) -> str | None:
    parts = urlsplit(settings.effective_storage_url)
    if parts.scheme == "file":
        return _check_folder(Path(parts.path))
    probe_bucket(parts.netloc, settings.s3_endpoint_url, settings.ready_timeout_s)
    return None


def _check_folder(folder: Path) -> str | None:
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK):
        raise PermissionError(f"{folder} is not writable")
    return None if existing == folder else "folder is created on first write"


# --- one line for an unreachable dependency ---------------------------------------------------


def outage_line(error: BaseException, settings: Settings) -> str | None:
    """One line saying which dependency could not be reached and how to check it, or None
    when ``error`` is not an unreachable dependency."""
    if isinstance(error, (sqlalchemy_exc.OperationalError, sqlalchemy_exc.InterfaceError)):
        url = settings.effective_database_url
        parts = urlsplit(url)
        hint = (
            f"is it running? (pg_isready -h {parts.hostname} -p {parts.port or 5432})"
            if parts.hostname
            else "check the file and its folder"
        )
        return (
            f"cannot reach the database at {masked(url)} (IMAGEGEN_DATABASE_URL): "
            f"{_reason(error)}; {hint}"
        )
    if isinstance(error, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        url = settings.effective_broker_url
        return (
            f"cannot reach the broker at {masked(url)} (IMAGEGEN_BROKER_URL): "
            f"{_reason(error)}; is Redis running? (redis-cli -u URL ping)"
        )
    if isinstance(error, (botocore_exc.EndpointConnectionError, botocore_exc.ConnectTimeoutError)):
        return (
            f"cannot reach the object store at {settings.s3_endpoint_url or 'AWS S3'} "
            f"(IMAGEGEN_S3_ENDPOINT_URL): {_reason(error)}"
        )
    return None


def _reason(error: BaseException) -> str:
    """The innermost cause's first line (``Connection refused``), without passwords."""
    cause: BaseException = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    text = lines[0] if lines else type(cause).__name__
    if "failed:" in text:  # psycopg: 'connection to server at "h", port p failed: <why>'
        text = text.rsplit("failed:", 1)[1].strip()
    return masked(text)[:200]
