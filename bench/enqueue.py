"""1. Enqueue: a JSONL batch through the batch path vs. a raw COPY of the same rows.

The batch path is what ``imagegen batch submit FILE`` does: read and validate every line
(``parse_jsonl``), write the batch and its jobs in one transaction (``enqueue_batch``: COPY),
then nudge the dispatcher (``nudge``, run after the commit). The baseline is Postgres alone:
the very rows that path wrote, exported as COPY text beforehand, copied into a scratch copy of
``jobs``: same columns, defaults, constraints and indexes (``LIKE jobs INCLUDING ALL``) and the
same foreign key to ``batches``, i.e. everything Postgres has to do for these rows anyway. A
bare table (no index, no key) is measured too, to show what those cost Postgres. Every figure
is the median of the repeats; the job tables are emptied before each one.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import median
from typing import Any, cast

import psycopg
from sqlalchemy import text

from bench.figures import Figure, Target
from bench.runner import Context, Result
from bench.stats import median_of, rate

_COPY_WRITE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Repeat:
    validate_s: float
    insert_s: float
    nudge_s: float
    copy_indexed_s: float
    copy_bare_s: float

    @property
    def total_s(self) -> float:
        return self.validate_s + self.insert_s + self.nudge_s


def run(context: Context) -> Result:
    count = context.size(100_000, 20_000)
    repeats = context.size(3, 1)
    with context.stack("enqueue", services=False) as stack:
        source = write_jsonl(stack.workdir / "batch.jsonl", count)
        results = [measure(source, count) for _ in range(repeats)]
        indexes = _index_count()
    chosen = median_of(results, key=lambda r: r.total_s)
    indexed = median(r.copy_indexed_s for r in results)
    bare = median(r.copy_bare_s for r in results)
    note = (
        f"{count:,} lines: read+validate {chosen.validate_s:.2f} s, insert (COPY, commit) "
        f"{chosen.insert_s:.2f} s, nudge {chosen.nudge_s * 1000:.0f} ms; median of "
        f"{repeats}"
    )
    figures = [
        Figure(
            "1 enqueue",
            "batch path, JSONL to committed rows",
            rate(count, chosen.total_s),
            "rows/s",
            rate(count, indexed),
            "raw COPY, a copy of jobs",
            Target(">=", 0.5),
            note,
        ),
        Figure(
            "1 enqueue",
            "raw COPY into a bare table",
            rate(count, bare),
            "rows/s",
            note=f"no index, no key: what the {indexes} indexes and the foreign key of jobs "
            "cost Postgres",
        ),
    ]
    return Result(figures, {"jobs": count, "repeats": [asdict(r) for r in results]})


def write_jsonl(path: Path, count: int) -> Path:
    """A batch file like a nightly pipeline's: a ref and a prompt per line, some options."""
    with path.open("w") as out:
        for n in range(count):
            out.write(
                json.dumps(
                    {
                        "ref": f"sku-{n}",
                        "prompt": f"product photo number {n}, studio light, "
                        "white background, soft shadows",
                        "aspect_ratio": "16:9",
                        "resolution": "2K",
                        "seed": n + 1,
                    }
                )
                + "\n"
            )
    return path


def measure(source: Path, count: int) -> Repeat:
    """One repeat: the batch path, then the same rows by raw COPY (indexed and bare)."""
    from worker.core.batch_input import parse_jsonl
    from worker.service.batches import enqueue_batch, nudge

    empty_job_tables()
    started = time.perf_counter()
    with source.open("rb") as lines:
        items = parse_jsonl(lines, max_jobs=count)
    validated = time.perf_counter()
    receipt = enqueue_batch(items, name="bench", dispatch=False)
    inserted = time.perf_counter()
    nudge(receipt.job_ids)  # what enqueue_batch runs after its commit
    nudged = time.perf_counter()
    rows = export_rows(receipt.batch_id)
    return Repeat(
        validate_s=validated - started,
        insert_s=inserted - validated,
        nudge_s=nudged - inserted,
        copy_indexed_s=raw_copy(rows, like_jobs=True),
        copy_bare_s=raw_copy(rows, like_jobs=False),
    )


def _columns() -> str:
    from worker.store.batches import JOB_COLUMNS

    return ", ".join(JOB_COLUMNS)


def _index_count() -> int:
    from worker.db.engine import get_engine

    with get_engine().connect() as conn:
        return int(
            conn.scalar(text("SELECT count(*) FROM pg_indexes WHERE tablename = 'jobs'")) or 0
        )


def empty_job_tables() -> None:
    from worker.db.engine import get_engine

    with get_engine().begin() as conn:
        conn.execute(text("TRUNCATE jobs, batches CASCADE"))


def export_rows(batch_id: uuid.UUID) -> bytes:
    """The batch's rows as COPY text, in line order."""
    query = (
        f"COPY (SELECT {_columns()} FROM jobs WHERE batch_id = '{batch_id}' "
        "ORDER BY batch_index) TO STDOUT"
    )
    with _driver_connection() as conn, conn.cursor() as cursor, cursor.copy(query) as copy:
        return b"".join(bytes(block) for block in copy)


def raw_copy(rows: bytes, *, like_jobs: bool) -> float:
    """Seconds to COPY ``rows`` into a fresh scratch table and commit: a copy of ``jobs``
    (indexes, constraints, foreign key), or a bare table with its columns only."""
    shape = (
        "INCLUDING ALL, FOREIGN KEY (batch_id) REFERENCES batches (id)"
        if like_jobs
        else "INCLUDING DEFAULTS"
    )
    with _driver_connection() as conn, conn.cursor() as cursor:
        cursor.execute(
            f"DROP TABLE IF EXISTS bench_copy; CREATE TABLE bench_copy (LIKE jobs {shape})"
        )
        conn.commit()
        started = time.perf_counter()
        with cursor.copy(f"COPY bench_copy ({_columns()}) FROM STDIN") as copy:
            for offset in range(0, len(rows), _COPY_WRITE_BYTES):
                copy.write(rows[offset : offset + _COPY_WRITE_BYTES])
        conn.commit()
        elapsed = time.perf_counter() - started
        cursor.execute("DROP TABLE bench_copy")
        conn.commit()
        return elapsed


@contextmanager
def _driver_connection() -> Iterator[psycopg.Connection[Any]]:
    """A psycopg connection of the configured database, for COPY (closed at the end)."""
    from worker.db.engine import get_engine

    raw = get_engine().raw_connection()
    try:
        yield cast("psycopg.Connection[Any]", raw.driver_connection)
    finally:
        raw.close()
