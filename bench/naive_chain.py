"""The naive pipeline: the Celery code a user would write instead, as the fair baseline.

The same three steps as the pipeline with the same I/O: submit with httpx, one poll, download
the picture and store it with one boto3 ``put_object``. Each step is one ORM load of a row of a
plain table (``bench_naive_jobs``: no constraints but its key, no index) and one commit, then
the next task is sent. None of the guarantees: no guarded transitions, leases, events, limits,
outbox, idempotent submits or verification of the download. It runs on the workers of
:mod:`bench.celery_baseline` (same broker, Celery settings, pool and concurrency as the real
workers), against the same simulator and S3 server, with one engine, one httpx client and one
boto3 client per process.

The producer side (:func:`create_table`, :func:`run_round`) runs in the benchmark process.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
from sqlalchemy import DateTime, Engine, String, create_engine, func, insert, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from bench.celery_baseline import app
from bench.workload import Round
from worker.core.settings import get_settings
from worker.provider.client import RESULT_PATH, SUBMIT_PATH

#: Connections per worker process: one per thread and a few more, as the real worker's pool.
POOL_SIZE = 20
_POLL_AGAIN_S = 1.0
#: What any Celery user adds: a task that meets a dropped connection (the simulator's server
#: closing a kept-alive one as it is reused) runs again a second later, up to 5 times. Without
#: it, one reset in 2,000 jobs left a job unfinished and the round waited out its time-out.
RETRY = {
    "acks_late": True,
    "autoretry_for": (httpx.TransportError,),
    "retry_kwargs": {"max_retries": 5},
    "default_retry_delay": 1,
}


class _Base(DeclarativeBase):
    pass


class NaiveJob(_Base):
    """A job as a naive implementation keeps it: a status string and what the steps found."""

    __tablename__ = "bench_naive_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(String(32))
    prompt: Mapped[str]
    resolution: Mapped[str] = mapped_column(String(8))
    aspect_ratio: Mapped[str] = mapped_column(String(8))
    seed: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="queued")
    prediction_id: Mapped[str | None]
    output_url: Mapped[str | None]
    key: Mapped[str | None]
    size: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# --- the tasks: one load and one commit each ----------------------------------------------------


@app.task(name="bench.naive_submit", **RETRY)
def naive_submit(job_id: int) -> None:
    with Session(_engine()) as session:
        job = session.get_one(NaiveJob, job_id)
        body = {
            "prompt": job.prompt,
            "aspect_ratio": job.aspect_ratio,
            "resolution": job.resolution,
            "seed": job.seed,
        }
        response = _http().post(SUBMIT_PATH, json=body)
        response.raise_for_status()
        job.prediction_id = response.json()["data"]["id"]
        job.status = "submitted"
        session.commit()
    naive_poll.apply_async((job_id,))


@app.task(name="bench.naive_poll", **RETRY)
def naive_poll(job_id: int) -> None:
    with Session(_engine()) as session:
        job = session.get_one(NaiveJob, job_id)
        response = _http().get(RESULT_PATH.format(prediction_id=job.prediction_id))
        response.raise_for_status()
        data = response.json()["data"]
        if data["status"] != "completed":
            naive_poll.apply_async((job_id,), countdown=_POLL_AGAIN_S)
            return
        job.output_url = data["outputs"][0]
        job.status = "generated"
        session.commit()
    naive_transfer.apply_async((job_id,))


@app.task(name="bench.naive_transfer", **RETRY)
def naive_transfer(job_id: int) -> None:
    bucket, prefix = _bucket()
    with Session(_engine()) as session:
        job = session.get_one(NaiveJob, job_id)
        response = _http().get(job.output_url or "")
        response.raise_for_status()
        key = f"{prefix}/naive/{job.run_id}/{job.id}.png"
        _s3().put_object(Bucket=bucket, Key=key, Body=response.content, ContentType="image/png")
        job.key, job.size = key, len(response.content)
        job.status, job.finished_at = "succeeded", datetime.now(UTC)
        session.commit()


@cache
def _engine() -> Engine:
    url = get_settings().effective_database_url
    return create_engine(url, pool_size=POOL_SIZE, max_overflow=0, pool_pre_ping=True)


@cache
def _http() -> httpx.Client:
    settings = get_settings()
    key = settings.api_key.get_secret_value() if settings.api_key else ""
    return httpx.Client(
        base_url=settings.base_url,
        headers={"Authorization": f"Bearer {key}"},
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
        timeout=30,
    )


@cache
def _s3() -> Any:
    return boto3.session.Session().client("s3", endpoint_url=get_settings().s3_endpoint_url)


@cache
def _bucket() -> tuple[str, str]:
    parts = urlsplit(get_settings().effective_storage_url)
    return parts.netloc, parts.path.strip("/")


# --- the producer side ----------------------------------------------------------------------------


def create_table(database_url: str) -> None:
    """Create ``bench_naive_jobs`` in the benchmark's scratch database."""
    engine = create_engine(database_url)
    try:
        _Base.metadata.create_all(engine)
    finally:
        engine.dispose()


def run_round(
    database_url: str, items: list[dict[str, Any]], *, run_id: str, timeout_s: float
) -> Round:
    """Insert ``items`` as rows, send a submit for each and wait until all have succeeded
    (times from the rows' ``finished_at``, as for the pipeline)."""
    engine = create_engine(database_url)
    try:
        started = time.time()
        with Session(engine) as session, session.begin():
            ids = session.scalars(
                insert(NaiveJob).returning(NaiveJob.id),
                [{**_columns(item), "run_id": run_id} for item in items],
            ).all()
        for job_id in ids:
            naive_submit.apply_async((job_id,))
        outcome = Round(jobs=len(ids), started=started)
        outcome.ends = _wait(engine, run_id, len(ids), timeout_s)
        outcome.timed_out = len(outcome.ends) < len(ids)
        outcome.by_status["succeeded"] = len(outcome.ends)
        return outcome
    finally:
        engine.dispose()


def _columns(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": item["prompt"],
        "resolution": item.get("resolution", "1080p"),
        "aspect_ratio": item.get("aspect_ratio", "1:1"),
        "seed": item.get("seed", 0),
    }


def _wait(engine: Engine, run_id: str, count: int, timeout_s: float) -> list[float]:
    deadline = time.monotonic() + timeout_s
    query = select(NaiveJob.finished_at).where(
        NaiveJob.run_id == run_id, NaiveJob.finished_at.is_not(None)
    )
    ends: list[float] = []
    while time.monotonic() < deadline:
        with Session(engine) as session:
            ends = [at.timestamp() for at in session.scalars(query) if at is not None]
        if len(ends) >= count:
            break
        time.sleep(0.5)
    return ends
