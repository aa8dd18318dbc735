"""The end-to-end pipeline once more, every process connected through a real PgBouncer in
transaction mode (the compose stack's way to run many workers against one Postgres).

The pooler has a handful of server connections for the test's worker, beat and this process,
so consecutive transactions of one client land on different server connections: a prepared
statement or any session state the code relied on would be missing on the next one. The same
tests as ``test_pipeline_e2e`` run here with ``IMAGEGEN_DB_TRANSACTION_POOLING=true``; skipped
with a message when the ``pgbouncer`` binary is not installed (Debian's ``pgbouncer``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from tests import harness
from tests.e2e import test_pipeline_e2e
from tests.harness import stop_process

pytestmark = pytest.mark.e2e

# the pipeline's tests, collected again in this module with its database route
test_twenty_mixed_jobs_reach_succeeded_with_verified_objects = (
    test_pipeline_e2e.test_twenty_mixed_jobs_reach_succeeded_with_verified_objects
)
test_status_cli_reports_the_stored_images = (
    test_pipeline_e2e.test_status_cli_reports_the_stored_images
)


@pytest.fixture(scope="module")
def pgbouncer(pg_url: str) -> Iterator[str]:
    """``pg_url`` through a PgBouncer in transaction mode started for this module."""
    if harness.pgbouncer_binary() is None:
        pytest.skip("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    proc, url, folder = harness.start_pgbouncer(pg_url)
    yield url
    stop_process(proc)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def service_env(service_env: dict[str, str], pgbouncer: str) -> dict[str, str]:
    """The session's deployment, with every process connecting through the pooler."""
    return {
        **service_env,
        "IMAGEGEN_DATABASE_URL": pgbouncer,
        "IMAGEGEN_DB_TRANSACTION_POOLING": "true",
        "IMAGEGEN_DB_POOL_SIZE": "4",
    }


def test_the_pooler_really_breaks_server_side_prepared_statements(pgbouncer: str) -> None:
    # Given psycopg's default (a statement is prepared on the server after its fifth run)
    engine = create_engine(pgbouncer, poolclass=NullPool)
    try:
        # When one client runs the same query in many transactions through the pooler while
        # other clients keep its few server connections busy
        with pytest.raises(DBAPIError, match="prepared statement"):
            _run_alongside_others(engine, pgbouncer)
    finally:
        engine.dispose()
    # Then it fails: what IMAGEGEN_DB_TRANSACTION_POOLING avoids (the tests above pass with it)


def _run_alongside_others(engine, url: str) -> None:
    others = [
        create_engine(url, poolclass=NullPool, connect_args={"prepare_threshold": None})
        for _ in range(3)
    ]
    held = [other.connect() for other in others]
    try:
        with engine.connect() as conn:
            for n in range(40):
                conn.execute(text("SELECT :n"), {"n": n})
                conn.commit()
                # another client's open transaction takes the server connection just freed
                held[n % 3].execute(text("SELECT 1"))
                conn.execute(text("SELECT :n"), {"n": n})
                conn.commit()
                held[n % 3].commit()
    finally:
        for conn in held:
            conn.close()
        for other in others:
            other.dispose()
