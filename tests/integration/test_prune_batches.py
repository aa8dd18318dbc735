"""Retention respects batches (issue 14, item 5): a batch's jobs are pruned together with the
batch, only when every one of them is past the age; a batch being pruned answers 404, never a
partial count. Real Postgres and the real CLI (in process)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from models.base import utcnow
from tests.integration.test_admin import run, run_json, sql, store_image
from worker.core.errors import BatchNotFound
from worker.service import batches

pytestmark = pytest.mark.integration


def finished_batch(count: int, *, days_ago: list[int]) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A batch whose jobs succeeded ``days_ago[i]`` days ago (created then too)."""
    receipt = batches.enqueue_batch(
        [{"prompt": f"p{i}"} for i in range(count)], dispatch=False, name="retention"
    )
    for job_id, days in zip(receipt.job_ids, days_ago, strict=True):
        at = utcnow() - timedelta(days=days)
        sql(
            "UPDATE jobs SET status = 'succeeded', created_at = :at, finished_at = :at "
            "WHERE id = :id",
            at=at,
            id=job_id,
        )
    oldest = utcnow() - timedelta(days=max(days_ago))
    newest = utcnow() - timedelta(days=min(days_ago))
    sql(
        "UPDATE batches SET created_at = :c, completed_at = :d WHERE id = :id",
        c=oldest,
        d=newest,
        id=receipt.batch_id,
    )
    return receipt.batch_id, receipt.job_ids


def jobs_of(batch_id: uuid.UUID) -> int:
    return sql("SELECT count(*) FROM jobs WHERE batch_id = :b", b=batch_id)[0][0]


def test_a_batch_with_a_recent_job_is_not_pruned_at_all(configured, service_env) -> None:
    # Given a 200-job batch like the report's: 47 jobs finished long ago, the rest recently
    batch_id, _ = finished_batch(200, days_ago=[40] * 47 + [2] * 153)
    # When the operator prunes everything older than 30 days
    preview = run_json(service_env, "prune", "--older-than", "30d", "--dry-run")
    report = run_json(service_env, "prune", "--older-than", "30d", "--batch-size", "20")
    # Then no job of the batch is gone, and the batch still counts 200 of 200
    assert jobs_of(batch_id) == 200
    view = batches.batch_status(batch_id)
    assert (view["total"], view["done"], view["progress"]) == (200, 200, 1.0)
    assert preview["jobs"] == report["jobs"]


def test_a_batch_past_the_age_goes_whole_with_its_objects_and_then_answers_404(
    configured, service_env
) -> None:
    # Given a batch whose jobs all finished long ago (two with stored images), and a loose job
    batch_id, job_ids = finished_batch(5, days_ago=[45, 44, 43, 42, 41])
    keys = [store_image(job_ids[0], 0), store_image(job_ids[1], 0)]
    loose = batches.enqueue_batch([{"prompt": "x"}], dispatch=False).job_ids[0]  # active: stays
    # When pruned in transactions of 2 jobs, objects too
    preview = run_json(service_env, "prune", "--older-than", "30d", "--dry-run")
    report = run_json(
        service_env, "prune", "--older-than", "30d", "--batch-size", "2", "--delete-objects"
    )
    # Then the batch and all its jobs are gone; the batch is not found any more
    assert preview["jobs"] >= 5 and report["jobs"] >= 5
    assert report["objects_deleted"] >= len(keys)
    assert jobs_of(batch_id) == 0
    assert sql("SELECT count(*) FROM batches WHERE id = :b", b=batch_id)[0][0] == 0
    with pytest.raises(BatchNotFound):
        batches.batch_status(batch_id)
    assert run(service_env, "batch", "status", str(batch_id)).returncode == 1
    assert sql("SELECT count(*) FROM jobs WHERE id = :j", j=loose)[0][0] == 1


def test_a_batch_whose_pruning_was_interrupted_answers_404_and_the_next_run_finishes(
    configured, service_env
) -> None:
    # Given a prune that marked the batch and deleted part of its jobs, then stopped
    batch_id, job_ids = finished_batch(4, days_ago=[40, 40, 40, 40])
    sql("UPDATE batches SET pruned_at = now() WHERE id = :b", b=batch_id)
    sql("DELETE FROM jobs WHERE id IN (:a, :b)", a=job_ids[0], b=job_ids[1])
    # Then the batch is gone to readers: no partial count, no partial manifest
    with pytest.raises(BatchNotFound):
        batches.batch_status(batch_id)
    with pytest.raises(BatchNotFound):
        batches.manifest(batch_id)
    listed = run_json(service_env, "batch", "list", "--limit", "200")
    assert str(batch_id) not in [item["id"] for item in listed["items"]]
    # And the next run deletes the rest, whatever the cutoff it is given
    run_json(service_env, "prune", "--older-than", "90d")
    assert jobs_of(batch_id) == 0
    assert sql("SELECT count(*) FROM batches WHERE id = :b", b=batch_id)[0][0] == 0
