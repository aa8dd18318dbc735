"""How fast the dashboard's pages answer with a large job table.

    .venv/bin/python -m bench.dashboard_pages --jobs 100000 [--runs 20]

Builds a scratch database on the local Postgres (``IMAGEGEN_TEST_PG_URL``'s server, dropped at
the end) holding one batch of ``--jobs`` jobs in a realistic mix (most succeeded with an image
row, some failed under several codes, some in flight, the rest queued, finishes spread over the
last two hours) plus 60 small batches, then serves the real app with uvicorn on 127.0.0.1 and
times each page over HTTP: median, 95th percentile and worst of ``--runs`` requests after one
warm-up. Nothing is sent to a broker or a provider.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid

import httpx
from sqlalchemy import text

from tests.harness import create_database, drop_database

TOKEN = "bench-token-6d1f0a-7e2b8c3d9e4f0a5b6c"
#: The mix of the big batch: (from, to) as fractions of its positions, status, error code;
#: the last 5 % stay queued.
MIX = (
    (0.0, 0.90, "succeeded", None),
    (0.90, 0.92, "failed", "provider_failed"),
    (0.92, 0.93, "failed", "content_policy"),
    (0.93, 0.935, "failed", "output_unavailable"),
    (0.935, 0.95, "running", None),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    url = create_database("imagegen_bench")
    data_dir = tempfile.mkdtemp(prefix="imagegen-bench-")
    try:
        os.environ.update(
            {
                "IMAGEGEN_DATABASE_URL": url,
                "IMAGEGEN_API_TOKENS": TOKEN,
                "IMAGEGEN_DATA_DIR": data_dir,
                "IMAGEGEN_BATCH_MAX_JOBS": str(max(args.jobs, 100_000)),
                "IMAGEGEN_LOG_LEVEL": "WARNING",
            }
        )
        from worker.db.schema import upgrade

        upgrade(url)
        started = time.perf_counter()
        batch_id, sample = fill(args.jobs)
        print(
            f"{args.jobs:,} jobs in one batch (+600 in 60 small batches) written in "
            f"{time.perf_counter() - started:.1f} s"
        )
        measure(batch_id, sample, args.jobs, args.runs)
    finally:
        from worker.db.engine import reset_engine

        reset_engine()
        drop_database(url)


def fill(count: int) -> tuple[uuid.UUID, uuid.UUID]:
    """The big batch in its mix, the small batches, image rows; then VACUUM ANALYZE."""
    from worker.db.engine import get_engine, session_scope
    from worker.service.batches import enqueue_batch

    items = [
        {"prompt": f"product photo number {n}, studio light", "ref": f"sku-{n}"}
        for n in range(count)
    ]
    batch = enqueue_batch(items, name="bench-100k", dispatch=False)
    for n in range(60):
        enqueue_batch(
            [{"prompt": f"small {n}-{i}"} for i in range(10)], name=f"small-{n}", dispatch=False
        )
    with session_scope() as session:
        for low, high, status, code in MIX:
            session.execute(
                text(
                    "UPDATE jobs SET status = :status, error_code = :code, attempts = 1, "
                    "submitted_at = now() - interval '2 hours', prediction_id = 'p-' || id, "
                    "finished_at = CASE WHEN :ended THEN now() - "
                    "(batch_index % 7200) * interval '1 second' END "
                    "WHERE batch_id = :batch AND batch_index >= :low AND batch_index < :high"
                ),
                {
                    "status": status,
                    "code": code,
                    "batch": batch.batch_id,
                    "ended": status in ("succeeded", "failed"),
                    "low": int(low * count),
                    "high": int(high * count),
                },
            )
        session.execute(
            text(
                "INSERT INTO job_images (job_id, idx, bucket, key, content_type, bytes, sha256, "
                "width, height, source_url, created_at) SELECT id, 0, 'bench', "
                "'images/' || id || '/0.png', 'image/png', 2315021, md5(id::text) || md5(prompt), "
                "3840, 2160, 'https://cdn.example.com/x.png', now() FROM jobs "
                "WHERE status = 'succeeded'"
            )
        )
    with get_engine().connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    return batch.batch_id, batch.job_ids[count // 2]


def measure(batch_id: uuid.UUID, job_id: uuid.UUID, count: int, runs: int) -> None:
    from tests.producers import running_api

    pages = {
        "overview": "/dashboard/",
        "overview (refresh fragment)": "/dashboard/fragments/overview",
        "batch list": "/dashboard/batches",
        "batch page (first gallery page)": f"/dashboard/batches/{batch_id}",
        "batch page (gallery, middle)": f"/dashboard/batches/{batch_id}?after={count // 2}",
        "batch page (gallery, last page)": f"/dashboard/batches/{batch_id}?before={count}",
        "batch page (state = failed)": f"/dashboard/batches/{batch_id}?status=failed",
        "batch page (code = content_policy)": f"/dashboard/batches/{batch_id}?code=content_policy",
        "batch page (state = queued, page 2)": (
            f"/dashboard/batches/{batch_id}?status=queued&after={int(0.96 * count)}"
        ),
        "job page": f"/dashboard/jobs/{job_id}",
        "GET /v1/batches/{id} (for comparison)": f"/v1/batches/{batch_id}",
    }
    with (
        running_api() as url,
        httpx.Client(
            base_url=url, timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client,
    ):
        print(f"{'page':<40} {'median':>9} {'p95':>9} {'worst':>9}")
        for name, path in pages.items():
            times = _times(client, path, runs)
            print(
                f"{name:<40} {statistics.median(times):>7.1f}ms "
                f"{_p95(times):>7.1f}ms {max(times):>7.1f}ms"
            )


def _times(client: httpx.Client, path: str, runs: int) -> list[float]:
    client.get(path).raise_for_status()  # warm-up: connections, caches, template compile
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        client.get(path).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return times


def _p95(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


if __name__ == "__main__":
    main()
