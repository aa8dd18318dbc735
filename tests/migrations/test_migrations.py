"""`alembic upgrade head` on an empty database matches the models; down and up round-trip."""

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import models
from tests import harness
from worker.db import downgrade, make_engine, upgrade

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
    assert _tables(empty_db) == {"jobs", "job_images", "job_events", "batches",
                                 "webhook_deliveries", "webhook_attempts", "fleet_controls"}
    assert _diff(empty_db) == []


def test_downgrade_and_upgrade_round_trip(empty_db: str) -> None:
    upgrade(empty_db)
    downgrade(empty_db, "base")
    assert _tables(empty_db) == set()
    upgrade(empty_db)
    assert _diff(empty_db) == []
