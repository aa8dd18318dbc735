"""Operator commands against real Postgres (and Redis as the broker, moto as S3):
`status` without an id, `jobs list`, `retry`, `retry --failed` and `prune`.

Jobs are put into their states through the store's guarded transitions where one exists
(failed, cancelled); rows are aged with plain SQL, which is what time would do.
"""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import redis as redis_lib
from sqlalchemy import text
from typer.testing import CliRunner

from models import Batch
from models.base import utcnow
from tests.harness import run_imagegen
from worker.blobs.storage import store_from_settings
from worker.cli.main import app
from worker.core.states import JobStatus
from worker.db.engine import get_engine, session_scope
from worker.service import jobs
from worker.store import jobs as job_store
from worker.store import steps, transitions

pytestmark = pytest.mark.integration


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


def run(env: dict[str, str], *args: str) -> Done:
    """The CLI in this process (the `configured` fixture set ``env`` up): quick."""
    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Done(result.exit_code, result.stdout, result.stderr)


run_process = run_imagegen  # the installed command, as an operator runs it


def run_json(env: dict[str, str], *args: str) -> Any:
    done = run(env, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def sql(statement: str, **params: Any) -> list[Any]:
    with get_engine().begin() as conn:
        result = conn.execute(text(statement), params)
        return list(result) if result.returns_rows else []


# --- making jobs in a given state --------------------------------------------------------------


def a_batch() -> uuid.UUID:
    with session_scope() as session:
        batch = Batch(id=uuid.uuid4(), total=10, created_at=utcnow())
        session.add(batch)
    return batch.id


def a_job(
    prompt: str = "a cat", *, batch: uuid.UUID | None = None, priority: str = "interactive"
) -> uuid.UUID:
    job_id = jobs.enqueue({"prompt": prompt}, priority=priority, dispatch=False)
    if batch is not None:
        sql(
            "UPDATE jobs SET batch_id = :b, batch_index = :i WHERE id = :id",
            b=batch,
            i=int(uuid.uuid4().int % 1_000_000),
            id=job_id,
        )
    return job_id


def failed_job(code: str, *, batch: uuid.UUID | None = None) -> uuid.UUID:
    job_id = a_job(f"fails with {code}", batch=batch)
    with session_scope() as session:
        claim = steps.claim_for_submit(session, job_id=job_id, lease_s=60)
        assert claim is not None
        assert transitions.fail(
            session,
            job_id=job_id,
            sources=[JobStatus.SUBMITTING],
            claim=claim,
            code=code,
            message=f"it went wrong: {code}",
        )
    sql(
        "UPDATE jobs SET poll_count = 4, poll_errors = 2, transfer_attempts = 1, "
        "prediction_id = 'p-old' WHERE id = :id",
        id=job_id,
    )
    return job_id


def cancelled_job() -> uuid.UUID:
    job_id = a_job("never mind")
    jobs.cancel(job_id)
    return job_id


def succeeded_job(*, finished_ago: timedelta, images: int = 0) -> uuid.UUID:
    job_id = a_job("done long ago")
    at = utcnow() - finished_ago
    sql(
        "UPDATE jobs SET status = 'succeeded', created_at = :at, finished_at = :at WHERE id = :id",
        at=at,
        id=job_id,
    )
    for index in range(images):
        store_image(job_id, index)
    return job_id


def store_image(job_id: uuid.UUID, index: int) -> str:
    store = store_from_settings_now()
    key = f"{store.prefix}/prune-test/{job_id}/{index}.png"
    store.put(key, io.BytesIO(b"\x89PNG fake"), content_type="image/png")
    with session_scope() as session:
        job_store.record_image(
            session,
            values={
                "job_id": job_id,
                "idx": index,
                "bucket": store.bucket,
                "key": key,
                "content_type": "image/png",
                "bytes": 9,
                "sha256": "0" * 64,
                "width": 1,
                "height": 1,
                "source_url": "https://example.com/x.png",
                "nsfw": None,
            },
        )
    return key


def store_from_settings_now() -> Any:
    from worker.core.settings import get_settings

    return store_from_settings(get_settings())


def age(job_id: uuid.UUID, ago: timedelta) -> None:
    at = utcnow() - ago
    sql(
        "UPDATE jobs SET created_at = :at, finished_at = CASE WHEN finished_at IS NULL "
        "THEN NULL ELSE :at END WHERE id = :id",
        at=at,
        id=job_id,
    )


def statuses(*job_ids: uuid.UUID) -> list[str]:
    return [jobs.status(job_id)["status"] for job_id in job_ids]


# --- status -----------------------------------------------------------------------------------


def test_status_without_an_id_summarises_the_queue(configured, service_env) -> None:
    # Given jobs in every kind of state, the oldest queued one ten minutes old
    oldest = a_job("waiting longest", priority="batch")
    age(oldest, timedelta(minutes=10))
    a_job("waiting")
    running = a_job("at the provider")
    sql("UPDATE jobs SET status = 'running' WHERE id = :id", id=running)
    failed_job("provider_failed")
    failed_job("provider_failed")
    failed_job("content_policy")
    cancelled_job()
    succeeded_job(finished_ago=timedelta(hours=1))

    # When the operator asks for the status without a job id
    view = run_json(service_env, "status")

    # Then it counts every state, the work in flight and the backlog
    assert view["counts"] == {
        "queued": 2,
        "submitting": 0,
        "running": 1,
        "transferring": 0,
        "succeeded": 1,
        "failed": 3,
        "cancelled": 1,
    }
    assert view["total"] == 8 and view["in_flight"] == 1
    assert view["queued_by_priority"] == {"interactive": 1, "batch": 1}
    assert view["queued_due"] == 2
    assert 590 <= view["oldest_queued_age_s"] <= 700
    assert view["failed_by_code"] == {"provider_failed": 2, "content_policy": 1}
    assert view["paused"] is False and view["breaker"] == "closed"
    assert view["fleet"]["in_flight"] == 1 and view["fleet"]["max_in_flight"] == 1000
    # and a person gets the same as text from the installed command
    done = run_process(service_env, "status")
    assert done.returncode == 0, done.stderr
    assert "in flight at the provider: 1" in done.stdout
    assert "oldest queued: 10m" in done.stdout
    assert "breaker: closed" in done.stdout
    assert "submissions: running" in done.stdout and "in flight: 1/1000" in done.stdout


def test_status_of_an_empty_queue(configured, service_env) -> None:
    view = run_json(service_env, "status")
    assert view["total"] == 0 and view["oldest_queued_age_s"] is None


# --- jobs list --------------------------------------------------------------------------------


def test_jobs_list_filters_by_status_batch_and_age(configured, service_env) -> None:
    batch = a_batch()
    old = a_job("old one")
    age(old, timedelta(days=3))
    in_batch = failed_job("provider_failed", batch=batch)
    fresh = a_job("fresh one")

    everything = run_json(service_env, "jobs", "list")
    assert [v["id"] for v in everything] == [str(fresh), str(in_batch), str(old)]  # newest first
    assert run_json(service_env, "jobs", "list", "--since", "1d") == everything[:2]
    failed = run_json(service_env, "jobs", "list", "--status", "failed")
    assert [(v["id"], v["error_code"]) for v in failed] == [(str(in_batch), "provider_failed")]
    assert [
        v["id"]
        for v in run_json(service_env, "jobs", "list", "-s", "queued,failed", "--batch", str(batch))
    ] == [str(in_batch)]
    assert [v["id"] for v in run_json(service_env, "jobs", "list", "--limit", "1")] == [str(fresh)]
    assert everything[1]["batch_id"] == str(batch)
    table = run(service_env, "jobs", "list")
    assert str(fresh) in table.stdout and "provider_failed" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["jobs", "list", "--status", "done"], "status: unknown done"),
        (["jobs", "list", "--since", "yesterday"], "since: must be a duration"),
        (["jobs", "list", "--batch", "7"], "batch: must be a batch id"),
        (["retry"], "give either a job id or --failed"),
        (["retry", str(uuid.uuid4()), "--failed"], "give either a job id or --failed"),
        (["retry", str(uuid.uuid4()), "--code", "x"], "only go with --failed"),
        (["retry", "12"], "job_id: must be a job id"),
        (["prune", "--older-than", "soon"], "older_than: must be a duration"),
        (["prune", "--older-than", "0d"], "older_than: must be longer than zero"),
    ],
)
def test_bad_admin_input_exits_2(configured, service_env, args: list[str], message: str) -> None:
    done = run(service_env, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in " ".join(done.stderr.split())


# --- retry ------------------------------------------------------------------------------------


def broker_messages(redis_url: str) -> int:
    client = redis_lib.Redis.from_url(redis_url)
    try:
        return int(client.llen("imagegen"))
    finally:
        client.close()


def test_retry_one_failed_job_starts_it_afresh(configured, service_env, redis_url) -> None:
    # Given a job that failed after using some of its budgets
    job_id = failed_job("retries_exhausted")
    store_image(job_id, 0)  # a partial output of the old attempt
    queued_before = broker_messages(redis_url)

    # When the operator retries it
    assert run_json(service_env, "retry", str(job_id)) == {"retried": 1, "ids": [str(job_id)]}

    # Then it is queued with fresh counters and deadline, the retry is in its event log,
    # the old attempt's image rows are gone and the dispatcher was woken
    view = jobs.status(job_id)
    assert view["status"] == "queued" and view["error_code"] is None
    assert (view["attempts"], view["poll_count"], view["transfer_attempts"]) == (0, 0, 0)
    assert view["prediction_id"] is None and view["images"] == []
    assert view["finished_at"] is None
    assert view["deadline_at"] > (utcnow() + timedelta(hours=5)).isoformat()
    retried = view["events"][-1]
    assert (retried["event"], retried["from"], retried["to"]) == ("retried", "failed", "queued")
    assert retried["detail"]["previous_code"] == "retries_exhausted"
    assert broker_messages(redis_url) == queued_before + 1


@pytest.mark.parametrize("state", ["queued", "cancelled", "succeeded"])
def test_only_failed_jobs_can_be_retried(configured, service_env, state: str) -> None:
    job_id = {
        "queued": a_job,
        "cancelled": cancelled_job,
        "succeeded": lambda: succeeded_job(finished_ago=timedelta(0)),
    }[state]()
    done = run(service_env, "retry", str(job_id))
    assert done.returncode == 1
    assert f"is {state}: only failed jobs can be retried" in " ".join(done.stderr.split())
    assert statuses(job_id) == [state]


def test_retry_an_unknown_job_exits_1(configured, service_env) -> None:
    done = run(service_env, "retry", str(uuid.uuid4()))
    assert done.returncode == 1 and "no job with id" in " ".join(done.stderr.split())


def test_retry_failed_narrows_by_batch_and_code(configured, service_env, redis_url) -> None:
    # Given failed jobs in two batches with two codes, and jobs in other states
    batch, other = a_batch(), a_batch()
    target = [failed_job("provider_failed", batch=batch) for _ in range(3)]
    other_code = failed_job("content_policy", batch=batch)
    other_batch = failed_job("provider_failed", batch=other)
    unbatched = failed_job("provider_failed")
    bystanders = [a_job("queued one"), cancelled_job()]
    queued_before = broker_messages(redis_url)

    # When the operator retries the failed jobs of one batch with one code
    result = run_json(
        service_env, "retry", "--failed", "--batch", str(batch), "--code", "provider_failed"
    )

    # Then exactly those are queued again and the dispatcher is woken (once) to send them
    assert sorted(result["ids"]) == sorted(str(j) for j in target) and result["retried"] == 3
    assert statuses(*target) == ["queued"] * 3
    assert statuses(other_code, other_batch, unbatched) == ["failed"] * 3
    assert statuses(*bystanders) == ["queued", "cancelled"]
    assert broker_messages(redis_url) == queued_before + 1

    # And without filters every remaining failed job goes
    rest = run_json(service_env, "retry", "--failed")
    assert sorted(rest["ids"]) == sorted(str(j) for j in (other_code, other_batch, unbatched))
    assert run_json(service_env, "retry", "--failed") == {"retried": 0, "ids": []}


def test_retry_failed_of_many_jobs_runs_in_chunks(configured, service_env, monkeypatch) -> None:
    from worker.service import operator as admin

    monkeypatch.setattr(admin, "RETRY_CHUNK", 4)
    ids = [failed_job("provider_failed") for _ in range(10)]
    assert sorted(admin.retry_failed(code="provider_failed")) == sorted(ids)
    assert statuses(*ids) == ["queued"] * 10
    events = sql("SELECT count(*) FROM job_events WHERE event = 'retried'")[0][0]
    assert events == 10


# --- prune ------------------------------------------------------------------------------------


def test_prune_deletes_old_finished_jobs_with_events_images_and_objects(
    configured, service_env, s3_endpoint, aws_env
) -> None:
    import boto3

    # Given old finished jobs (with stored images), recent ones, and old active ones
    old = [succeeded_job(finished_ago=timedelta(days=40), images=2) for _ in range(5)]
    old_failed = failed_job("provider_failed")
    age(old_failed, timedelta(days=35))
    recent = succeeded_job(finished_ago=timedelta(days=2), images=1)
    old_queued = a_job("still waiting after all this time")
    age(old_queued, timedelta(days=60))
    batch = a_batch()
    sql(
        "UPDATE batches SET completed_at = :at WHERE id = :id",
        at=utcnow() - timedelta(days=40),
        id=batch,
    )
    keys = _keys_of(old)
    events = sql(
        "SELECT count(*) FROM job_events JOIN jobs ON jobs.id = job_id "
        "WHERE jobs.finished_at < :cutoff",
        cutoff=utcnow() - timedelta(days=30),
    )[0][0]
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, **_boto(aws_env))

    # When a dry run looks first
    preview = run_json(service_env, "prune", "--older-than", "30d", "--dry-run")
    assert (preview["jobs"], preview["images"], preview["dry_run"]) == (6, 10, True)
    assert sql("SELECT count(*) FROM jobs")[0][0] == 8  # nothing deleted

    # And then the operator prunes, objects included, in batches of two
    report = run_json(
        service_env, "prune", "--older-than", "30d", "--delete-objects", "--batch-size", "2"
    )

    # Then the old finished jobs are gone with their events, images and objects; the rest stay
    assert (report["jobs"], report["images"], report["objects_deleted"]) == (6, 10, 10)
    assert (report["batches"], report["events"], report["batch_rows"]) == (3, events, 1)
    remaining = {row[0] for row in sql("SELECT id FROM jobs")}
    assert remaining == {recent, old_queued}
    assert (
        sql("SELECT count(*) FROM job_events WHERE job_id NOT IN (:a, :b)", a=recent, b=old_queued)[
            0
        ][0]
        == 0
    )
    assert sql("SELECT count(*) FROM job_images")[0][0] == 1
    for key in keys:
        assert "Contents" not in s3.list_objects_v2(Bucket=_bucket(), Prefix=key)
    assert sql("SELECT count(*) FROM batches WHERE id = :id", id=batch)[0][0] == 0


def test_prune_without_delete_objects_leaves_storage_alone(
    configured, service_env, s3_endpoint, aws_env
) -> None:
    import boto3

    job_id = succeeded_job(finished_ago=timedelta(days=10), images=1)
    key = _keys_of([job_id])[0]
    report = run_json(service_env, "prune", "--older-than", "1w")
    assert (report["jobs"], report["objects_deleted"]) == (1, 0)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, **_boto(aws_env))
    assert s3.head_object(Bucket=_bucket(), Key=key)["ContentLength"] == 9


def test_scheduled_prune_is_off_by_default_and_follows_its_settings(
    configured, monkeypatch
) -> None:
    from worker.broker import tasks
    from worker.core.settings import get_settings, reset_settings
    from worker.service.retention import prune_plan

    job_id = succeeded_job(finished_ago=timedelta(days=10))
    tasks.prune.run()  # IMAGEGEN_PRUNE_OLDER_THAN_DAYS unset: nothing happens
    assert statuses(job_id) == ["succeeded"]
    monkeypatch.setenv("IMAGEGEN_PRUNE_OLDER_THAN_DAYS", "7")
    reset_settings()
    plan = prune_plan(get_settings())
    assert plan is not None and plan.older_than == timedelta(days=7) and plan.store is None
    tasks.prune.run()
    with pytest.raises(Exception, match="no job with id"):
        jobs.status(job_id)


def _keys_of(job_ids: list[uuid.UUID]) -> list[str]:
    with session_scope() as session:
        return [image.key for job_id in job_ids for image in job_store.list_images(session, job_id)]


def _bucket() -> str:
    return str(store_from_settings_now().bucket)


def _boto(aws_env: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": aws_env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": aws_env["AWS_SECRET_ACCESS_KEY"],
        "region_name": aws_env["AWS_DEFAULT_REGION"],
    }
