"""5. Transfer: 4K outputs (about 25 MB of incompressible PNG each) from the provider to S3.

One worker process whose concurrency is the number of transfers run at once. Each round's
transfers are timed from their ``transfer_started`` event to the job's end (download, checks,
upload, rows) and the worker's peak RSS over the round is compared with its RSS before it.
The pictures are rendered into the simulator's cache beforehand (through the provider API,
with the same prompts and seed), so rendering is not timed, and the same bytes go to the
baseline: a plain boto3 ``upload_fileobj`` from memory with the default transfer settings,
as many at once, in this process (whose RSS growth is reported beside it).
"""

from __future__ import annotations

import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
from sqlalchemy import func, select

from bench import machine, overhead, stats, workload
from bench.figures import Figure, Target
from bench.runner import Context, Result
from bench.stack import BUCKET, Stack
from tests.harness import API_KEY

NOISY_4K = ["--latency", "*=0", "--queue-s", "0", "--noise"]
PICTURE = {"resolution": "4K", "aspect_ratio": "16:9"}
MIB = 1024 * 1024
MAX_RSS_PER_TRANSFER_MIB = 16
_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Measured:
    """One round: bytes moved, wall time, transfers at once, peak RSS growth."""

    bytes: int
    seconds: float
    overlap: int
    rss_growth: int

    @property
    def mib_per_s(self) -> float:
        return stats.rate(self.bytes, self.seconds) / MIB

    @property
    def rss_mib_per_transfer(self) -> float:
        return self.rss_growth / max(self.overlap, 1) / MIB


def run(context: Context) -> Result:
    concurrent = context.size(4, 2)
    rounds = context.size(2, 1)
    with context.stack(
        "transfer", simulator_args=NOISY_4K, settings=overhead.FIRST_POLL_AT_ONCE
    ) as stack:
        items = workload.requests(
            1 + rounds * concurrent, prompts=1 + rounds * concurrent, tag="transfer", **PICTURE
        )
        pictures = [prefetch(stack, item) for item in items]
        pid = stack.start_workers(1, concurrent)[0]
        workload.run(items[:1], name="warm-up", timeout_s=_TIMEOUT_S)
        meter = stack.cpu_meter()
        profiler = context.profiler(stack, [pid])
        meter.start()
        with profiler or nullcontext():
            worker = [
                worker_round(pid, items[start : start + concurrent])
                for start in range(1, len(items), concurrent)
            ]
        worker_cpu = meter.stop()
        stack.stop_all("worker")
        meter.start()
        plain = [
            plain_round(stack, pictures[start : start + concurrent])
            for start in range(1, len(items), concurrent)
        ]
        plain_cpu = meter.stop()
    details = {
        "worker": [vars(r) for r in worker],
        "plain": [vars(r) for r in plain],
        "cpu_seconds": {"worker": worker_cpu, "plain": plain_cpu},
        "profile": profiler.summary() if profiler else None,
    }
    return Result(figures(worker, plain, concurrent, pictures), details)


def figures(
    worker: list[Measured], plain: list[Measured], concurrent: int, pictures: list[bytes]
) -> list[Figure]:
    rate = stats.percentile([r.mib_per_s for r in worker], 50)
    plain_rate = stats.percentile([r.mib_per_s for r in plain], 50)
    rss = max(r.rss_mib_per_transfer for r in worker)
    plain_rss = max(r.rss_mib_per_transfer for r in plain)
    size = sum(map(len, pictures)) / len(pictures) / MIB
    return [
        Figure(
            "5 transfer",
            f"4K outputs to S3, {concurrent} at once",
            rate,
            "MiB/s",
            plain_rate,
            "plain boto3 upload_fileobj, same bytes",
            Target(">=", 0.8),
            f"{len(worker)} rounds of {concurrent} x {size:.1f} MiB; median round; "
            f"download, checks and upload each",
        ),
        Figure(
            "5 transfer",
            "worker peak RSS growth per concurrent transfer",
            rss,
            "MiB",
            target=Target("<=", MAX_RSS_PER_TRANSFER_MIB, on="value"),
            note=f"worst round, {max(r.overlap for r in worker)} transfers overlapping; "
            f"plain upload_fileobj: {plain_rss:.1f} MiB per upload",
        ),
    ]


def prefetch(stack: Stack, request: dict[str, Any]) -> bytes:
    """The picture the provider will serve for ``request`` (rendered into its cache now)."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=stack.simulator_url, headers=headers, timeout=60) as client:
        created = client.post("/api/v3/vidu/viduq2/text-to-image", json=request)
        prediction = created.raise_for_status().json()["data"]
        while not prediction["outputs"]:
            time.sleep(0.1)
            answer = client.get(f"/api/v3/predictions/{prediction['id']}/result")
            prediction = answer.raise_for_status().json()["data"]
        return client.get(prediction["outputs"][0]).raise_for_status().content


def worker_round(pid: int, items: list[dict[str, Any]]) -> Measured:
    """Transfers of ``items`` through the worker ``pid``: bytes, wall time, peak RSS."""
    machine.reset_peak(pid)
    before = machine.rss_bytes(pid)
    measured = workload.run(items, name="transfer", timeout_s=_TIMEOUT_S)
    growth = machine.peak_rss_bytes(pid) - before
    assert measured.batch_id is not None
    spans = workload.transfer_spans(measured.batch_id)
    seconds = max(end for _, end in spans) - min(start for start, _ in spans) if spans else 0
    return Measured(
        bytes=_stored_bytes(measured.batch_id),
        seconds=seconds,
        overlap=stats.peak_overlap(spans),
        rss_growth=growth,
    )


def plain_round(stack: Stack, pictures: list[bytes]) -> Measured:
    """The same bytes uploaded from memory with boto3's defaults, all at once, here."""
    clients = [boto3.client("s3", endpoint_url=stack.s3_url) for _ in pictures]
    me = os.getpid()
    machine.reset_peak(me)
    before = machine.rss_bytes(me)

    def upload(index: int) -> tuple[float, float]:
        started = time.time()
        clients[index].upload_fileobj(io.BytesIO(pictures[index]), BUCKET, f"plain/{index}.png")
        return started, time.time()

    with ThreadPoolExecutor(len(pictures)) as pool:
        spans = list(pool.map(upload, range(len(pictures))))
    growth = machine.peak_rss_bytes(me) - before
    seconds = max(end for _, end in spans) - min(start for start, _ in spans)
    return Measured(
        bytes=sum(map(len, pictures)),
        seconds=seconds,
        overlap=stats.peak_overlap(spans),
        rss_growth=growth,
    )


def _stored_bytes(batch_id: Any) -> int:
    from models import Job, JobImage
    from worker.db.engine import session_scope

    with session_scope() as session:
        total = session.scalar(
            select(func.sum(JobImage.bytes))
            .join(Job, Job.id == JobImage.job_id)
            .where(Job.batch_id == batch_id)
        )
    return int(total or 0)
