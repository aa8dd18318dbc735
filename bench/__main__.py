"""``python -m bench run [NAME ...] [--quick]`` measures; ``python -m bench show`` prints.

``make bench`` runs every benchmark at full size (about 13 minutes on 2 cores), prints the
table and writes ``bench/results/<timestamp>.json``, ``bench/results/latest.json``, the
table in ``docs/benchmarks.md`` and its plots (``docs/bench/*.png``; ``python -m bench plot
[FILE]`` draws them from any results file). ``--quick`` runs small sizes (a few minutes) and leaves
``latest.json`` and the docs alone, as does a run of only some benchmarks.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine, results, runner
from bench.stack import DEFAULT_REDIS_URL


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "show":
        document = json.loads(Path(args.file).read_text())
        print(results.render(document))
        return 0
    if args.command == "plot":
        from bench import plots

        for path in plots.draw_all(json.loads(Path(args.file).read_text())):
            print(path)
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return _run(args)


def _parser() -> argparse.ArgumentParser:
    names = list(runner.registry())
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run benchmarks and print the table")
    run.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default: all): {', '.join(names)}",
    )
    run.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    run.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    run.add_argument(
        "--concurrency", type=int, default=16, help="threads per worker process (default 16)"
    )
    run.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help="the broker; its database is flushed (default: %(default)s)",
    )
    run.add_argument(
        "--profile",
        action="store_true",
        help="record py-spy profiles of the workers (needs py-spy installed)",
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for every process started (what-if runs; the results "
        "record it), e.g. --set IMAGEGEN_POLL_RATE=0",
    )
    run.add_argument("--keep", type=Path, help="keep scratch files and logs in this folder")
    show = commands.add_parser("show", help="print the table of a results file")
    show.add_argument("file", nargs="?", default=str(results.RESULTS_DIR / "latest.json"))
    plot = commands.add_parser("plot", help="draw the plots of a results file into docs/bench/")
    plot.add_argument("file", nargs="?", default=str(results.RESULTS_DIR / "latest.json"))
    return parser


def _run(args: argparse.Namespace) -> int:
    names = args.names or list(runner.registry())
    unknown = sorted(set(names) - set(runner.registry()))
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; choose from "
            f"{', '.join(runner.registry())}",
            file=sys.stderr,
        )
        return 2
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="imagegen-bench-"))
    started_at, started = datetime.now(UTC), time.monotonic()
    context = runner.Context(
        workdir=workdir.resolve(),
        redis_url=args.redis_url,
        quick=args.quick,
        workers=args.workers,
        concurrency=args.concurrency,
        profile=args.profile,
        overrides=dict(item.split("=", 1) for item in args.set),
    )
    document: dict[str, Any] = {
        "version": 1,
        "started_at": started_at.isoformat(),
        "quick": args.quick,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "overrides": context.overrides,
        "machine": _machine(args.redis_url),
        "benchmarks": {},
    }
    try:
        found = runner.run(names, context)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    document["duration_s"] = round(time.monotonic() - started, 1)
    document["benchmarks"] = {name: result.as_dict() for name, result in found.items()}
    complete = not args.quick and not args.set and names == list(runner.registry())
    print()
    print(results.render(document))
    path = results.save(document, complete=complete)
    if complete:
        from bench import plots

        plots.draw_all(document)
    print(
        f"\nresults: {path}"
        + ("" if complete else " (latest.json and docs left as they were: not a full run)")
    )
    return 1 if any(result.error for result in found.values()) else 0


def _machine(redis_url: str) -> dict[str, object]:
    import redis
    from sqlalchemy import create_engine, text

    from tests.harness import PG_ADMIN_URL

    engine = create_engine(PG_ADMIN_URL)
    try:
        with engine.connect() as conn:
            postgres = str(conn.scalar(text("SHOW server_version")))
    finally:
        engine.dispose()
    info = redis.Redis.from_url(redis_url).info("server")
    return machine.describe(
        postgres_version=postgres.split()[0], redis_version=str(info.get("redis_version"))
    )


if __name__ == "__main__":
    sys.exit(main())
