"""Chaos run: jobs through real worker processes while everything that can go wrong does.

Producers enqueue the jobs steadily over the run (``feed_s``) while worker processes are
SIGKILLed at random every few seconds and replaced, and these outages happen one after another:
the S3 server unreachable for ``s3_outage_s`` (a gate in front of it refuses connections; the
objects it holds survive), the broker stopped for ``redis_outage_s`` (a ``redis-server`` of the
run's own, restarted empty), the provider answering 5xx to every poll for ``poll_5xx_s``, Redis
flushed once, and Postgres restarted once (when allowed). Throughout, the simulator injects 5xx,
429s, ghost and stuck predictions, failed predictions and broken outputs.

Once every job has ended, the check waits until nothing changes any more, stops the workers,
and then checks the promises at rest:

- every job is in a terminal state (none lost);
- no job failed because of an outage: a failed job is explained by a fault the simulator put
  into its own prediction (failed, stuck, no output, a broken output) or by the provider's own
  answer; anything else counts as failed by an outage;
- no job created more than one prediction unless it is flagged with ambiguous submits;
- every prediction a job followed that the provider generated (completed, with outputs, none
  of them broken) was stored, unless its output URL expired (a flagged job's unknown extra
  predictions are reported with it);
- objects and image rows match one to one, with equal sha256.

``make chaos`` runs ``python -m tests.chaos --jobs 500``; a small run is part of the tests.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import random
import statistics
import subprocess
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import redis
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from tests import harness
from tests.outages import RedisServer, TcpGate

PROFILE = (
    "http_500=0.04,http_503=0.02,http_429_retry_after=0.04,ghost_500=0.02,"
    "ghost_slow=0.01,failed=0.04,no_output=0.01,stuck=0.01,poll_500=0.05,poll_429=0.03,"
    "output_truncated=0.04,output_expired=0.01,output_mislabelled=0.02,urls_list=0.2,"
    "date_rfc3339=0.2"
)
BUCKET = "imagegen-chaos"

#: Faults the simulator puts into a prediction that may end its job as failed: the job's own
#: fate, not the system's.
ENDING_FAULTS = frozenset(
    {"failed", "stuck", "no_output", "nsfw", "output_expired", "output_truncated",
     "output_mislabelled"}
)  # fmt: skip
#: Faults that break a generated prediction's outputs (it could not be stored).
BROKEN_OUTPUT_FAULTS = frozenset({"output_expired", "output_truncated", "output_mislabelled"})
#: Failure codes the provider's own answer decides.
PROVIDER_DECIDED = frozenset({"provider_failed", "no_output", "content_policy", "invalid_request"})


@dataclass
class Options:
    jobs: int = 500
    workers: int = 2
    concurrency: int = 8
    kill_every_s: float = 4.0
    #: Jobs are enqueued evenly over this many seconds; the outages happen meanwhile.
    feed_s: float = 240.0
    s3_outage_s: float = 60.0
    redis_outage_s: float = 60.0
    poll_5xx_s: float = 30.0
    flush_redis: bool = True
    restart_postgres: bool = False
    deadline_s: float = 420.0
    timeout_s: float = 1200.0
    profile: str = PROFILE


@dataclass
class Report:
    jobs: int = 0
    by_state: Counter[str] = field(default_factory=Counter)
    by_code: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    failed_by_outage: int = 0
    unflagged_duplicates: int = 0
    flagged_jobs: int = 0
    flagged_duplicate_predictions: int = 0
    generated_not_stored: int = 0
    expired_not_stored: int = 0
    image_rows: int = 0
    objects: int = 0
    objects_without_rows: int = 0
    rows_without_objects: int = 0
    mismatched_objects: int = 0
    kills: int = 0
    exits: Counter[int] = field(default_factory=Counter)
    enqueued_in_outages: int = 0
    #: How long each enqueue during an outage took (the row is written; the nudge may fail).
    outage_enqueue_s: list[float] = field(default_factory=list)
    enqueue_errors: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    drain_s: float = 0.0
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.failed_by_outage == 0
            and self.unflagged_duplicates == 0
            and self.generated_not_stored == 0
            and self.objects_without_rows == 0
            and self.rows_without_objects == 0
            and self.mismatched_objects == 0
            and not self.enqueue_errors
            and not self.silent_exits
        )

    @property
    def silent_exits(self) -> int:
        """Workers that stopped by themselves with exit code 0: nothing would restart them."""
        return self.exits.get(0, 0)

    def lines(self) -> list[str]:
        exits = ", ".join(f"{n} x code {code}" for code, n in sorted(self.exits.items()))
        timed = sorted(self.outage_enqueue_s)
        enqueue_s = (
            f"median {statistics.median(timed) * 1000:.0f} ms, max {timed[-1] * 1000:.0f} ms"
            if timed
            else "-"
        )
        return [
            f"jobs                           {self.jobs}",
            f"final states                   {dict(sorted(self.by_state.items()))}",
            f"failure codes                  {dict(sorted(self.by_code.items()))}",
            f"jobs lost (not terminal)       {self.lost}",
            f"jobs failed by an outage       {self.failed_by_outage}",
            f"unflagged duplicate submits    {self.unflagged_duplicates}",
            f"flagged ambiguous jobs         {self.flagged_jobs} "
            f"(extra predictions: {self.flagged_duplicate_predictions})",
            f"generated, never stored        {self.generated_not_stored} "
            f"(URL expired: {self.expired_not_stored})",
            f"image rows / objects           {self.image_rows} / {self.objects}",
            f"objects without rows           {self.objects_without_rows}",
            f"rows without objects           {self.rows_without_objects}",
            f"mismatched objects             {self.mismatched_objects}",
            f"enqueued during outages        {self.enqueued_in_outages} "
            f"(errors: {len(self.enqueue_errors)}; {enqueue_s})",
            f"workers killed (SIGKILL)       {self.kills}",
            f"workers that exited            {exits or '-'} (silent, code 0: {self.silent_exits})",
            f"disruptions                    {'; '.join(self.events) or '-'}",
            f"time to drain                  {self.drain_s:.1f} s",
            *(f"  example: {line}" for line in self.examples[:10]),
            f"verdict                        {'OK' if self.ok else 'BROKEN PROMISE'}",
        ]


class Fleet:
    """Worker processes that can be killed and replaced, tended like a supervisor does: one
    that exits (a preflight failing while the broker is down exits 1) is started again."""

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

    def tend(self, report: Report) -> None:
        for proc in [proc for proc in self.procs if proc.poll() is not None]:
            report.exits[proc.returncode] += 1
            self.procs.remove(proc)
            self.start()

    def stop(self) -> None:
        while self.procs:
            harness.stop_process(self.procs.pop(), timeout_s=5)


@dataclass
class Outage:
    """One disruption of the schedule: ``begin`` at ``at`` s into the run, ``end`` after
    ``duration_s`` (0: a single action)."""

    name: str
    at: float
    duration_s: float
    begin: Callable[[], None]
    end: Callable[[], None] = lambda: None
    started: float | None = None
    ended: bool = False


@dataclass
class Servers:
    redis: RedisServer
    s3_gate: TcpGate
    s3_direct: str
    sim_url: str


def run(options: Options, workdir: Path) -> Report:
    """Set everything up, run the jobs through the chaos, check the promises, tear down."""
    from worker.db.schema import upgrade

    pg_url = harness.create_database("imagegen_chaos")
    upgrade(pg_url)
    moto, s3_url = harness.start_moto(workdir)
    harness.create_bucket(s3_url, BUCKET)
    gate = TcpGate(int(s3_url.rsplit(":", 1)[1]))
    gate.open()
    sim, sim_url = harness.start_simulator(
        workdir / "simulator.log",
        "--profile",
        options.profile,
        "--latency",
        "*=0.5-3",
        "--ghost-delay-s",
        "8",
    )
    broker = RedisServer(workdir / "redis.log")
    broker.start()
    servers = Servers(broker, gate, s3_url, sim_url)
    env = {
        **harness.service_env(
            pg_url=pg_url,
            redis_url=broker.url,
            s3_endpoint=gate.url,
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
        return _run(options, env, fleet, servers)
    finally:
        fleet.stop()
        harness.stop_process(beat)
        harness.stop_process(sim)
        gate.close()
        harness.stop_process(moto)
        broker.stop()
        os.environ.clear()
        os.environ.update(saved)
        harness.use_env({})
        harness.drop_database(pg_url)


def _run(options: Options, env: dict[str, str], fleet: Fleet, servers: Servers) -> Report:
    harness.use_env(env)
    for _ in range(options.workers):
        fleet.start()
    report = Report()
    prompts: dict[uuid.UUID, str] = {}
    started = time.monotonic()
    _disrupt(options, fleet, servers, report, prompts)
    report.drain_s = time.monotonic() - started
    report.jobs = len(prompts)
    # check at rest: the discards of failed jobs' outputs finish, then no worker runs at all
    _settle(servers.s3_direct)
    fleet.stop()
    _check(report, prompts, servers)
    return report


def _schedule(options: Options, servers: Servers) -> list[Outage]:
    """The outages, one after another inside the feed window (each waits for the previous)."""
    outages: list[Outage] = []
    if options.s3_outage_s:
        outages.append(
            Outage("S3 unreachable", 0.1, options.s3_outage_s,
                   servers.s3_gate.close, servers.s3_gate.open)
        )  # fmt: skip
    if options.redis_outage_s:
        outages.append(
            Outage("Redis stopped", 0.4, options.redis_outage_s,
                   servers.redis.stop, servers.redis.start)
        )  # fmt: skip
    if options.poll_5xx_s:
        outages.append(
            Outage("polls answered 5xx", 0.7, options.poll_5xx_s,
                   lambda: _poll_outage(servers, 503), lambda: _poll_outage(servers, None))
        )  # fmt: skip
    if options.flush_redis:
        outages.append(
            Outage("Redis flushed", 0.85, 0,
                   lambda: redis.Redis.from_url(servers.redis.url).flushall())
        )  # fmt: skip
    if options.restart_postgres:
        outages.append(Outage("Postgres restarted", 0.9, 0, _restart_postgres))
    for outage in outages:
        outage.at *= options.feed_s
    return outages


def _poll_outage(servers: Servers, status: int | None) -> None:
    """The provider's query service down (every poll answered ``status``), or back (None)."""
    httpx.post(
        f"{servers.sim_url}/_sim/config", json={"poll_outage_status": status}, timeout=10
    ).raise_for_status()


def _disrupt(
    options: Options,
    fleet: Fleet,
    servers: Servers,
    report: Report,
    prompts: dict[uuid.UUID, str],
) -> None:
    rng = random.Random(7)
    run_id = uuid.uuid4().hex[:6]
    started = time.monotonic()
    deadline = started + options.timeout_s
    next_kill = started + options.kill_every_s
    schedule = _schedule(options, servers)
    current: Outage | None = None
    try:
        while time.monotonic() < deadline:
            now = time.monotonic() - started
            due = min(options.jobs, int(options.jobs * now / options.feed_s) + 1)
            while len(prompts) < due:
                _feed(run_id, len(prompts), prompts, report, in_outage=current is not None)
            if current is not None and now >= current.started + current.duration_s:  # type: ignore[operator]
                current.end()
                current.ended = True
                report.events.append(
                    f"{current.name} for {current.duration_s:g} s at {current.started:.0f} s"
                )
                current = None
            pending = [o for o in schedule if o.started is None]
            if current is None and pending and now >= pending[0].at:
                current = pending[0]
                current.started = now
                current.begin()
                if not current.duration_s:
                    current.ended = True
                    report.events.append(f"{current.name} at {now:.0f} s")
                    current = None
            if time.monotonic() >= next_kill and fleet.procs:
                fleet.kill_one(rng)
                report.kills += 1
                next_kill = time.monotonic() + options.kill_every_s * rng.uniform(0.5, 1.5)
            fleet.tend(report)
            fed = len(prompts) >= options.jobs
            if fed and current is None and not pending and not _active(set(prompts)):
                return
            time.sleep(0.25)
    finally:
        if current is not None and not current.ended:
            current.end()


def _feed(
    run_id: str, n: int, prompts: dict[uuid.UUID, str], report: Report, *, in_outage: bool
) -> None:
    """Enqueue job ``n`` as a producer does: the row is the record (the broker's nudge may
    fail); a database restarting is waited out."""
    from worker.service.jobs import enqueue

    prompt = f"chaos {run_id} #{n}"
    fields = {
        "prompt": prompt,
        "resolution": ("1080p", "2K")[n % 2],
        "aspect_ratio": ("1:1", "16:9", "9:16")[n % 3],
    }
    for _ in range(60):
        try:
            started = time.perf_counter()
            prompts[enqueue(fields)] = prompt
            if in_outage:
                report.enqueued_in_outages += 1
                report.outage_enqueue_s.append(time.perf_counter() - started)
            return
        except OperationalError:  # Postgres restarting
            time.sleep(0.5)
        except Exception as exc:  # an enqueue that an outage made fail is a broken promise
            report.enqueue_errors.append(f"#{n}: {type(exc).__name__}: {exc}"[:300])
            return
    report.enqueue_errors.append(f"#{n}: the database stayed unreachable")


def _settle(s3_url: str, quiet_s: float = 6.0, timeout_s: float = 120.0) -> None:
    """Wait until the bucket's objects and the image rows stop changing for ``quiet_s``."""
    deadline = time.monotonic() + timeout_s
    previous, since = None, time.monotonic()
    while time.monotonic() < deadline:
        snapshot = (frozenset(_object_keys(s3_url)), frozenset(_image_keys()))
        if snapshot != previous:
            previous, since = snapshot, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(1)


def _s3(s3_url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=s3_url,
        aws_access_key_id=harness.AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=harness.AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=harness.AWS_ENV["AWS_DEFAULT_REGION"],
    )


def _object_keys(s3_url: str) -> list[str]:
    return [
        item["Key"]
        for page in _s3(s3_url).get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for item in page.get("Contents", [])
    ]


def _image_keys() -> list[str]:
    from models import JobImage
    from worker.db.engine import session_scope

    with session_scope() as session:
        return list(session.scalars(select(JobImage.key)))


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


def _check(report: Report, prompts: dict[uuid.UUID, str], servers: Servers) -> None:
    from models import Job, JobImage
    from worker.db.engine import session_scope

    predictions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    listed = httpx.get(f"{servers.sim_url}/_sim/predictions", timeout=60).json()
    for record in listed["predictions"]:
        predictions[record["prompt"]].append(record)
    with session_scope() as session:
        jobs = list(session.scalars(select(Job).where(Job.id.in_(list(prompts)))))
        images = list(session.scalars(select(JobImage)))
    for job in jobs:
        report.by_state[job.status] += 1
        if job.status not in ("succeeded", "failed", "cancelled"):
            report.lost += 1
        if job.error_code:
            report.by_code[job.error_code] += 1
        own = predictions.get(prompts[job.id], [])
        _check_payments(report, job, own)
        if job.status != "succeeded":
            _check_unstored(report, job, own)
    _check_objects(report, images, servers.s3_direct)


def _check_payments(report: Report, job: Any, own: list[dict[str, Any]]) -> None:
    """One prediction per job unless flagged; a failure explained by the job's own faults."""
    if job.ambiguous_submits:
        report.flagged_jobs += 1
        report.flagged_duplicate_predictions += max(0, len(own) - 1)
    elif len(own) > 1:
        report.unflagged_duplicates += 1
        report.examples.append(f"{job.id} {len(own)} predictions, not flagged")
    faults = {name for record in own for name in (record.get("faults") or {})}
    explained = job.error_code in PROVIDER_DECIDED or faults & ENDING_FAULTS
    if job.status == "failed" and not explained:
        report.failed_by_outage += 1
        report.examples.append(f"{job.id} failed {job.error_code}: {job.error_message}")


def _check_unstored(report: Report, job: Any, own: list[dict[str, Any]]) -> None:
    """A job that did not succeed: the prediction it followed was not generated intact (paid,
    then lost). A flagged job's other predictions (a submit answered 5xx that created one all
    the same) are never known to it: they are the flagged extra predictions, counted above."""
    followed = (
        own
        if not job.ambiguous_submits
        else [record for record in own if record["id"] == job.prediction_id]
    )
    for record in followed:
        generated = record["status"] == "completed" and record.get("output_count", 0)
        broken = set(record.get("faults") or {}) & BROKEN_OUTPUT_FAULTS
        if generated and not broken:
            report.generated_not_stored += 1
            report.examples.append(
                f"{job.id} ({job.status} {job.error_code}): prediction {record['id']} "
                "generated, not stored"
            )
        elif generated and "output_expired" in broken:
            report.expired_not_stored += 1


def _check_objects(report: Report, images: list, s3_url: str) -> None:  # type: ignore[type-arg]
    """Every object has its row with its checksum, every row its object (the fleet stopped)."""
    s3 = _s3(s3_url)
    keys = set(_object_keys(s3_url))
    by_key = {image.key: image for image in images}
    report.image_rows, report.objects = len(by_key), len(keys)
    report.objects_without_rows = len(keys - set(by_key))
    report.rows_without_objects = len(set(by_key) - keys)
    for key in keys & set(by_key):
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        if hashlib.sha256(body).hexdigest() != by_key[key].sha256:
            report.mismatched_objects += 1


def main() -> int:
    # this process is a producer: during the broker outage each enqueue warns that its nudge
    # was not sent (the dispatcher sends it later); hundreds of those lines say nothing here
    logging.getLogger("imagegen").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-every-s", type=float, default=4.0)
    parser.add_argument("--feed-s", type=float, default=240.0, help="enqueue over this long")
    parser.add_argument("--s3-outage-s", type=float, default=60.0, help="0: none")
    parser.add_argument("--redis-outage-s", type=float, default=60.0, help="0: none")
    parser.add_argument("--poll-5xx-s", type=float, default=30.0, help="0: none")
    parser.add_argument(
        "--no-restart-postgres",
        action="store_true",
        help="skip the Postgres restart (it needs pg_ctlcluster and root)",
    )
    parser.add_argument("--timeout-s", type=float, default=1200.0)
    parser.add_argument(
        "--deadline-s",
        type=float,
        default=420.0,
        help="each job's deadline: it ends the stuck predictions, so the run lasts that long "
        "after the last one; longer than the outages and the backlog they leave",
    )
    parser.add_argument("--keep", type=Path, help="keep the logs in this folder")
    args = parser.parse_args()
    options = Options(
        jobs=args.jobs,
        workers=args.workers,
        kill_every_s=args.kill_every_s,
        feed_s=args.feed_s,
        s3_outage_s=args.s3_outage_s,
        redis_outage_s=args.redis_outage_s,
        poll_5xx_s=args.poll_5xx_s,
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
