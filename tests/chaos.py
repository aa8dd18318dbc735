"""Chaos run: jobs through real worker processes while everything that can go wrong does.

Worker processes are SIGKILLed at random every few seconds and replaced, Redis is flushed once,
Postgres is restarted once (when allowed), and the simulator injects 5xx, 429s, ghost and stuck
predictions, failed predictions and broken outputs. At the end it checks the promises:

- every job is in a terminal state (none lost);
- no job created more than one prediction unless it is flagged with ambiguous submits;
- image rows and stored objects match one to one, with equal sha256.

``make chaos`` runs ``python -m tests.chaos --jobs 500``; a smaller run is part of the tests.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import httpx
import redis
from sqlalchemy import select

from tests import harness

PROFILE = (
    "http_500=0.04,http_503=0.02,http_429_retry_after=0.04,ghost_500=0.02,"
    "ghost_slow=0.01,failed=0.04,no_output=0.01,stuck=0.01,poll_500=0.05,poll_429=0.03,"
    "output_truncated=0.04,output_expired=0.01,output_mislabelled=0.02,urls_list=0.2,"
    "date_rfc3339=0.2"
)
BUCKET = "imagegen-chaos"


@dataclass
class Options:
    jobs: int = 500
    workers: int = 2
    concurrency: int = 8
    kill_every_s: float = 4.0
    flush_redis: bool = True
    restart_postgres: bool = False
    deadline_s: float = 90.0
    timeout_s: float = 600.0
    profile: str = PROFILE


@dataclass
class Report:
    jobs: int = 0
    by_state: Counter[str] = field(default_factory=Counter)
    by_code: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    unflagged_duplicates: int = 0
    flagged_jobs: int = 0
    flagged_duplicate_predictions: int = 0
    image_rows: int = 0
    objects: int = 0
    mismatched_objects: int = 0
    kills: int = 0
    events: list[str] = field(default_factory=list)
    drain_s: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.unflagged_duplicates == 0
            and self.mismatched_objects == 0
            and self.image_rows == self.objects
        )

    def lines(self) -> list[str]:
        return [
            f"jobs                         {self.jobs}",
            f"final states                 {dict(sorted(self.by_state.items()))}",
            f"failure codes                {dict(sorted(self.by_code.items()))}",
            f"jobs lost (not terminal)     {self.lost}",
            f"unflagged duplicate submits  {self.unflagged_duplicates}",
            f"flagged ambiguous jobs       {self.flagged_jobs} "
            f"(extra predictions: {self.flagged_duplicate_predictions})",
            f"image rows / objects         {self.image_rows} / {self.objects}",
            f"mismatched objects           {self.mismatched_objects}",
            f"workers killed (SIGKILL)     {self.kills}",
            f"other disruptions            {', '.join(self.events) or '-'}",
            f"time to drain                {self.drain_s:.1f} s",
            f"verdict                      {'OK' if self.ok else 'BROKEN PROMISE'}",
        ]


class Fleet:
    """Worker processes that can be killed and replaced."""

    def __init__(self, env: dict[str, str], logs: Path, options: Options) -> None:
        self.env, self.logs, self.options = env, logs, options
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = 0

    def start(self) -> None:
        self.started += 1
        self.procs.append(
            harness.start_worker(
                self.env,
                self.logs / f"worker-{self.started}.log",
                concurrency=self.options.concurrency,
                name=f"chaos-{self.started}@%h",
            )
        )

    def kill_one(self, rng: random.Random) -> None:
        victim = self.procs.pop(rng.randrange(len(self.procs)))
        victim.kill()
        victim.wait()
        self.start()

    def stop(self) -> None:
        while self.procs:
            harness.stop_process(self.procs.pop(), timeout_s=5)


def run(options: Options, workdir: Path) -> Report:
    """Set everything up, run the jobs through the chaos, check the promises, tear down."""
    from worker.db.schema import upgrade

    pg_url = harness.create_database("imagegen_chaos")
    upgrade(pg_url)
    moto, s3_url = harness.start_moto(workdir)
    harness.create_bucket(s3_url, BUCKET)
    sim, sim_url = harness.start_simulator(
        workdir / "simulator.log",
        "--profile",
        options.profile,
        "--latency",
        "*=0.5-3",
        "--ghost-delay-s",
        "8",
    )
    redis_url = harness.REDIS_URL
    redis.Redis.from_url(redis_url).flushdb()
    env = {
        **harness.service_env(
            pg_url=pg_url,
            redis_url=redis_url,
            s3_endpoint=s3_url,
            simulator_url=sim_url,
            bucket=BUCKET,
        ),
        "IMAGEGEN_JOB_DEADLINE_S": str(options.deadline_s),
        "IMAGEGEN_LOG_LEVEL": "WARNING",
        "IMAGEGEN_DATA_DIR": str(workdir),
    }
    beat = harness.start_imagegen(env, workdir / "beat.log", "beat")
    fleet = Fleet(env, workdir, options)
    saved = dict(os.environ)
    try:
        return _run(options, env, fleet, sim_url)
    finally:
        fleet.stop()
        harness.stop_process(beat)
        harness.stop_process(sim)
        harness.stop_process(moto)
        os.environ.clear()
        os.environ.update(saved)
        harness.use_env({})
        harness.drop_database(pg_url)


def _run(options: Options, env: dict[str, str], fleet: Fleet, sim_url: str) -> Report:
    from worker.service.jobs import enqueue

    harness.use_env(env)
    for _ in range(options.workers):
        fleet.start()
    run_id = uuid.uuid4().hex[:6]
    prompts = {
        enqueue(
            {
                "prompt": f"chaos {run_id} #{n}",
                "resolution": ("1080p", "2K")[n % 2],
                "aspect_ratio": ("1:1", "16:9", "9:16")[n % 3],
            }
        ): f"chaos {run_id} #{n}"
        for n in range(options.jobs)
    }
    report = Report(jobs=options.jobs)
    started = time.monotonic()
    _disrupt(options, env, fleet, report, set(prompts))
    report.drain_s = time.monotonic() - started
    # check at rest: the discards of failed jobs' outputs finish, then no worker runs at all
    _settle(env)
    fleet.stop()
    _check(report, prompts, env, sim_url)
    return report


def _settle(env: dict[str, str], quiet_s: float = 6.0, timeout_s: float = 120.0) -> None:
    """Wait until the bucket's objects and the image rows stop changing for ``quiet_s``."""
    deadline = time.monotonic() + timeout_s
    previous, since = None, time.monotonic()
    while time.monotonic() < deadline:
        snapshot = (frozenset(_object_keys(env)), frozenset(_image_keys()))
        if snapshot != previous:
            previous, since = snapshot, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(1)


def _object_keys(env: dict[str, str]) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=env["IMAGEGEN_S3_ENDPOINT_URL"])
    return [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for item in page.get("Contents", [])
    ]


def _image_keys() -> list[str]:
    from models import JobImage
    from worker.db.engine import session_scope

    with session_scope() as session:
        return list(session.scalars(select(JobImage.key)))


def _disrupt(
    options: Options, env: dict[str, str], fleet: Fleet, report: Report, job_ids: set[uuid.UUID]
) -> None:
    rng = random.Random(7)
    deadline = time.monotonic() + options.timeout_s
    next_kill = time.monotonic() + options.kill_every_s
    flushed = restarted = False
    while time.monotonic() < deadline and _active(job_ids):
        time.sleep(0.5)
        progress = 1 - _active(job_ids) / len(job_ids)
        if time.monotonic() >= next_kill:
            fleet.kill_one(rng)
            report.kills += 1
            next_kill = time.monotonic() + options.kill_every_s * rng.uniform(0.5, 1.5)
        if options.flush_redis and not flushed and progress >= 0.2:
            redis.Redis.from_url(env["IMAGEGEN_BROKER_URL"]).flushdb()
            report.events.append(f"redis flushed at {progress:.0%}")
            flushed = True
        if options.restart_postgres and not restarted and progress >= 0.5:
            _restart_postgres()
            report.events.append(f"postgres restarted at {progress:.0%}")
            restarted = True


def _active(job_ids: set[uuid.UUID]) -> int:
    from models import ACTIVE_STATUSES, Job
    from worker.db.engine import session_scope

    for _ in range(30):  # the database may be restarting
        try:
            with session_scope() as session:
                query = select(Job.id).where(Job.status.in_(ACTIVE_STATUSES))
                return sum(1 for job_id in session.scalars(query) if job_id in job_ids)
        except Exception:  # the database may be restarting
            time.sleep(1)
    raise RuntimeError("the database did not come back")


def _restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
    )


def _check(
    report: Report, prompts: dict[uuid.UUID, str], env: dict[str, str], sim_url: str
) -> None:
    from models import Job, JobImage
    from worker.db.engine import session_scope

    created = httpx.get(f"{sim_url}/_sim/stats", timeout=30).json()["predictions_per_prompt"]
    with session_scope() as session:
        jobs = list(session.scalars(select(Job).where(Job.id.in_(list(prompts)))))
        images = list(session.scalars(select(JobImage)))
    report.lost = len(prompts) - sum(
        1 for job in jobs if job.status in ("succeeded", "failed", "cancelled")
    )
    for job in jobs:
        report.by_state[job.status] += 1
        if job.error_code:
            report.by_code[job.error_code] += 1
        count = int(created.get(prompts[job.id], 0))
        if job.ambiguous_submits:
            report.flagged_jobs += 1
            report.flagged_duplicate_predictions += max(0, count - 1)
        elif count > 1:
            report.unflagged_duplicates += 1
    _check_objects(report, images, env)


def _check_objects(report: Report, images: list, env: dict[str, str]) -> None:  # type: ignore[type-arg]
    """Every object has its row with its checksum, every row its object (the fleet stopped)."""
    s3 = boto3.client("s3", endpoint_url=env["IMAGEGEN_S3_ENDPOINT_URL"])
    keys = _object_keys(env)
    report.image_rows, report.objects = len(images), len(keys)
    by_key = {image.key: image for image in images}
    for key in keys:
        image = by_key.get(key)
        try:
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:  # gone since the listing: not an object after all
            report.objects -= 1
            continue
        if image is None or hashlib.sha256(body).hexdigest() != image.sha256:
            report.mismatched_objects += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-every-s", type=float, default=4.0)
    parser.add_argument(
        "--no-restart-postgres",
        action="store_true",
        help="skip the Postgres restart (it needs pg_ctlcluster and root)",
    )
    parser.add_argument("--timeout-s", type=float, default=900.0)
    parser.add_argument("--deadline-s", type=float, default=90.0)
    parser.add_argument("--keep", type=Path, help="keep the logs in this folder")
    args = parser.parse_args()
    options = Options(
        jobs=args.jobs,
        workers=args.workers,
        kill_every_s=args.kill_every_s,
        restart_postgres=not args.no_restart_postgres and _can_restart_postgres(),
        timeout_s=args.timeout_s,
        deadline_s=args.deadline_s,
    )
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        report = run(options, args.keep.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="imagegen-chaos-") as tmp:
            report = run(options, Path(tmp))
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


def _can_restart_postgres() -> bool:
    return os.path.isdir("/etc/postgresql") and os.geteuid() == 0


if __name__ == "__main__":
    raise SystemExit(main())
