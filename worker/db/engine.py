"""Engines and sessions for the configured database (Postgres or embedded SQLite)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from worker.core.settings import get_settings

#: What the pipeline, the dispatcher, the reconciler and the webhook sender open a
#: transaction with: :func:`session_scope`, or a stand-in in tests.
SessionFactory = Callable[[], AbstractContextManager[Session]]


def make_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 10, transaction_pooling: bool = False
) -> Engine:
    """An engine tuned for the backend: pooled Postgres, or a WAL-mode SQLite file.

    The pool keeps up to ``pool_size`` connections open: a worker's thread count and a few
    more, so a busy worker does not open and close connections all the time (``max_overflow``
    more for a burst, closed when handed back). A process never holds more than the sum.

    ``transaction_pooling``: the URL is a pooler in transaction mode (PgBouncer), where each
    transaction may run on another server connection. psycopg's server-side prepared
    statements (made after a query's fifth run) would then be missing on the next one, so
    none are made. Nothing else in the code is session-scoped: locks are
    ``pg_try_advisory_xact_lock``, settings ``set_config(..., true)``, and there is no LISTEN."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sqlalchemy.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # pre-ping: workers reconnect transparently after a Postgres restart
    connect_args = {"prepare_threshold": None} if transaction_pooling else {}
    # looked up when called: a process that traces has SQLAlchemy's instrumentation patch it
    return sqlalchemy.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args=connect_args,
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    settings = get_settings()
    return make_engine(
        settings.effective_database_url,
        pool_size=settings.effective_db_pool_size,
        max_overflow=settings.db_max_overflow,
        transaction_pooling=settings.db_transaction_pooling,
    )


@lru_cache(maxsize=1)
def _session_factory() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on error."""
    with _session_factory().begin() as session:
        yield session


def reset_engine() -> None:
    """Drop cached engines (tests, and after the settings changed)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    _session_factory.cache_clear()
