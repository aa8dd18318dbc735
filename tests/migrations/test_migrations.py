"""`alembic upgrade head` on an empty database matches the models; down and up round-trip."""

import threading
import time
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

import models
from tests import harness
from worker.db.engine import make_engine
from worker.db.schema import downgrade, upgrade

pytestmark = pytest.mark.integration


@pytest.fixture
def empty_pg() -> Iterator[str]:
    url = harness.create_database("imagegen_mig")
    yield url
    harness.drop_database(url)


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_db(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return request.getfixturevalue("empty_pg")


def _diff(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(context, models.Base.metadata)
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_head_matches_the_models(empty_db: str) -> None:
    upgrade(empty_db)
    assert _tables(empty_db) == {
        "jobs",
        "job_images",
        "job_events",
        "batches",
        "webhook_deliveries",
        "webhook_attempts",
        "fleet_controls",
        "revoked_sessions",
        "auth_failures",
        "tenants",
        "api_keys",
        "spend_counters",
        "charges",
    }
    assert _diff(empty_db) == []


def test_downgrade_and_upgrade_round_trip(empty_db: str) -> None:
    upgrade(empty_db)
    downgrade(empty_db, "base")
    assert _tables(empty_db) == set()
    upgrade(empty_db)
    assert _diff(empty_db) == []


def test_index_upgrade_runs_again_after_an_interruption(empty_pg: str) -> None:
    upgrade(empty_pg, "0003")
    engine = make_engine(empty_pg)
    try:  # what a run killed mid-build leaves: one of 0004's indexes, the version still 0003
        with engine.begin() as conn:
            conn.execute(text("CREATE INDEX ix_jobs_finished_at ON jobs (finished_at)"))
    finally:
        engine.dispose()
    upgrade(empty_pg)
    assert _diff(empty_pg) == []


def test_index_upgrade_does_not_block_writes(empty_pg: str) -> None:
    """A plain CREATE INDEX queues for a lock that every insert and update then queues behind;
    the upgrade builds concurrently, so writers go on while it waits and builds."""
    upgrade(empty_pg, "0003")
    engine = make_engine(empty_pg)
    writer, upgrading = engine.connect(), None
    try:
        writer.execute(text("LOCK TABLE jobs IN ROW EXCLUSIVE MODE"))  # a write in progress
        upgrading = threading.Thread(target=upgrade, args=(empty_pg,))
        upgrading.start()
        _wait_for_lock_wait(engine)  # the index build waits for the write to end
        with engine.connect() as another_writer:  # ... and another write does not wait for it
            another_writer.execute(text("SET lock_timeout = '5s'"))
            another_writer.execute(text("LOCK TABLE jobs IN ROW EXCLUSIVE MODE"))
            another_writer.rollback()
        writer.rollback()
        upgrading.join(timeout=60)
        assert not upgrading.is_alive()
    finally:
        writer.close()
        if upgrading is not None:
            upgrading.join(timeout=60)
        engine.dispose()
    assert _diff(empty_pg) == []


def _wait_for_lock_wait(engine: Engine, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query ILIKE '%INDEX%'"
                )
            )
            conn.rollback()
            if waiting:
                return
            time.sleep(0.05)
    raise AssertionError("the index build never waited for the open write")
