"""How fast a batch goes in: line validation, then ``enqueue_batch``'s bulk insert (COPY).

    .venv/bin/python -m bench.batch_insert --jobs 100000 [--runs 3]

Uses a scratch database on the local Postgres (``IMAGEGEN_TEST_PG_URL``'s server), dropped at
the end; nothing is sent to a broker (``dispatch=False``).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from tests.harness import create_database, drop_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    url = create_database("imagegen_bench")
    try:
        os.environ["IMAGEGEN_DATABASE_URL"] = url
        from worker.db import upgrade

        upgrade(url)
        for run in range(1, args.runs + 1):
            validate_s, insert_s = measure(args.jobs)
            print(f"run {run}: {args.jobs} lines validated in {validate_s:.2f} s "
                  f"({args.jobs / validate_s:,.0f}/s), inserted in {insert_s:.2f} s "
                  f"({args.jobs / insert_s:,.0f} rows/s)")
    finally:
        from worker.db import reset_engine

        reset_engine()
        drop_database(url)


def measure(count: int) -> tuple[float, float]:
    from worker.batch_input import parse_jsonl
    from worker.batches import enqueue_batch

    lines = [json.dumps({"ref": f"sku-{n}", "prompt": f"product photo number {n}, studio light",
                         "aspect_ratio": "16:9", "resolution": "2K", "seed": n + 1})
             for n in range(count)]
    started = time.perf_counter()
    items = parse_jsonl(lines, max_jobs=count)
    validated = time.perf_counter()
    enqueue_batch(items, name="bench", dispatch=False)
    return validated - started, time.perf_counter() - validated


if __name__ == "__main__":
    main()
