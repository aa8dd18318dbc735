"""Preflight: is this deployment able to take work without wasting a paid prediction?

``imagegen check`` runs every check and prints one line each; ``imagegen worker`` runs them
before it takes work. Each failure is one line that names the variable to fix:

- the database answers and is at the code's migration head (``IMAGEGEN_DATABASE_URL``,
  ``imagegen db upgrade``);
- the broker answers (``IMAGEGEN_BROKER_URL``);
- the bucket exists and takes a small write and delete under the prefix
  (``IMAGEGEN_STORAGE_URL``, ``IMAGEGEN_S3_ENDPOINT_URL``, the ``AWS_*`` credentials);
- the provider key is set (``GPTPROTO_API_KEY``) and accepted: a query of a prediction that
  cannot exist costs nothing, and the provider answers it 404 for a good key, 401 for a bad
  one (a refused key stops the worker; a provider that cannot be asked, or answers 403 for
  the balance, does not: submissions pause by themselves when they meet it).

A worker whose storage check fails does not exit: it pauses submissions fleet-wide (pause
code ``storage``, in the database, like the provider's pauses), so nothing is generated that
could not be stored; the reconciler's probe lifts the pause once a write succeeds, and the
queued work runs without a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from worker.blobs.storage import probe_write, store_from_settings
from worker.core.errors import (
    AuthenticationFailed,
    PermissionDenied,
    PredictionNotFound,
    ProviderError,
)
from worker.core.settings import Settings
from worker.db.engine import session_scope
from worker.db.schema import revisions
from worker.provider.client import ProviderClient
from worker.service import health
from worker.service.health import describe, masked
from worker.store import fleet

_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="preflight")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    line: str
    #: A failure that stops a worker from starting (not storage: that pauses submissions).
    fatal: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.line}


def run(settings: Settings) -> list[Check]:
    """Every check, side by side; the database's first (the others do not need it)."""
    checks: list[Callable[[Settings], Check]] = [
        check_database,
        check_broker,
        check_storage,
        check_provider_key,
    ]
    return list(_POOL.map(lambda check: check(settings), checks))


def check_database(settings: Settings) -> Check:
    url = settings.effective_database_url
    try:
        current, head = revisions(url)
    except Exception as exc:
        return Check(
            "database",
            False,
            f"cannot reach the database at {masked(url)}: {describe(exc)}; "
            "check IMAGEGEN_DATABASE_URL and that the server is running",
        )
    if current != head:
        return Check(
            "database",
            False,
            f"the database is at revision {current or 'none (empty)'}, the code needs {head}: "
            "run `imagegen db upgrade`",
        )
    return Check("database", True, f"reachable, at the migration head ({head})")


def check_broker(settings: Settings) -> Check:
    try:
        note = health.check_broker(settings)  # the same Redis PING as /readyz
    except Exception as exc:
        return Check(
            "broker",
            False,
            f"cannot reach the broker at {masked(settings.effective_broker_url)}: "
            f"{describe(exc)}; check IMAGEGEN_BROKER_URL and that Redis is running",
        )
    return Check("broker", True, note or "reachable")


def check_storage(settings: Settings) -> Check:
    store = store_from_settings(settings)
    where = settings.effective_storage_url
    try:
        probe_write(store)
    except Exception as exc:  # StorageError, or a client that could not even be built
        return Check("storage", False, storage_problem(where, exc), fatal=False)
    return Check("storage", True, f"{where} takes a write and a delete")


def storage_problem(where: str, exc: BaseException) -> str:
    text = str(exc)
    if "NoSuchBucket" in text:
        hint = "the bucket does not exist: create it (e.g. `mc mb` or `aws s3 mb`)"
    elif "AccessDenied" in text or "Forbidden" in text or "403" in text:
        hint = "access denied: check the AWS_* credentials and the bucket's policy"
    else:
        hint = describe(exc)
    return (
        f"cannot write to {where}: {hint}; check IMAGEGEN_STORAGE_URL and IMAGEGEN_S3_ENDPOINT_URL"
    )


#: A prediction id no provider has made: querying it is free and tells a good key (404) from a
#: bad one (401).
NO_PREDICTION = "0" * 32


def check_provider_key(settings: Settings) -> Check:
    if settings.api_key is None or not settings.api_key.get_secret_value().strip():
        return Check("provider", False, "GPTPROTO_API_KEY is not set")
    base = settings.base_url
    try:
        with closing(ProviderClient.from_settings(settings)) as provider:
            provider.get_result(NO_PREDICTION)
    except PredictionNotFound:
        return Check("provider", True, f"{base} accepts the key (a free query answered 404)")
    except AuthenticationFailed:
        return Check("provider", False, f"{base} refused GPTPROTO_API_KEY (401): set a valid key")
    except PermissionDenied as exc:
        line = f"{base} refused a query (403: {exc.message}); submissions pause when they meet it"
        return Check("provider", False, line, fatal=False)
    except ProviderError as exc:
        line = f"cannot ask {base} ({exc.code}); check GPTPROTO_BASE_URL (the key is not proven)"
        return Check("provider", False, line, fatal=False)
    return Check("provider", True, f"{base} accepts the key")


def pause_if_storage_down(checks: list[Check]) -> bool:
    """A failed storage check pauses submissions fleet-wide (lifted by the reconciler's probe
    once a write succeeds); True if it did."""
    failed = next((c for c in checks if c.name == "storage" and not c.ok), None)
    if failed is None:
        return False
    with session_scope() as session:
        return fleet.storage_unavailable(session, reason=f"preflight: {failed.line}")
