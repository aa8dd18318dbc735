"""``imagegen demo``: the embedded mode, end to end, on a fresh machine with only Python.

A SQLite file, Celery's in-process broker with a worker on threads, the simulator on a free
local port and images written to a local folder: the same pipeline as the service mode, only
the edges are local. It leaves the PNG files and a manifest for a person to open.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from simulator.config import SimulatorConfig, parse_latency
from simulator.server import serve_in_thread
from worker.broker import wiring
from worker.broker.embedded import running_in_process
from worker.cli.output import handles_errors, out
from worker.core.states import TERMINAL
from worker.db.engine import session_scope
from worker.db.schema import upgrade
from worker.service.jobs import enqueue, status
from worker.store import jobs as job_store

DEMO_PROMPTS = [
    ("a lighthouse on a cliff at dawn, oil painting", "16:9", "1080p"),
    ("a red fox curled up in fresh snow", "1:1", "1080p"),
    ("a neon street market in the rain at night", "9:16", "2K"),
    ("an isometric cozy reading nook, soft light", "4:3", "1080p"),
    ("a paper-cut diorama of a mountain village", "3:2", "2K"),
    ("a macro photo of dew on a spider web", "2:3", "1080p"),
    ("a panoramic desert canyon under the milky way", "21:9", "4K"),
    ("a watercolor map of an imaginary archipelago", "3:4", "1080p"),
]
DEMO_KEY = "sk-demo-local"
TIMEOUT_S = 300


@handles_errors
def demo(
    jobs_count: int = typer.Option(8, "--jobs", min=1, max=200, help="How many jobs to run."),
    output: str = typer.Option("demo-output", "--out", help="Folder for images and manifest."),
) -> None:
    """Run a small batch end to end on this machine: no servers, no configuration."""
    raise typer.Exit(run_demo(jobs_count=jobs_count, output=output, console=out))


def run_demo(*, jobs_count: int, output: str, console: Console) -> int:
    """Run the demo; return the exit code (0 when every job succeeded)."""
    out_dir = Path(output).resolve()
    _fresh(out_dir)
    with _simulator() as base_url:
        _configure(out_dir, base_url)
        upgrade()
        with running_in_process(concurrency=8):
            ids = _enqueue(jobs_count)
            _wait(ids, console)
    views = _collect(ids)
    manifest = _write_manifest(out_dir, views)
    _print_table(views, console)
    console.print(f"\nimages under {out_dir / 'images'}\nmanifest {manifest}")
    return 0 if all(view["status"] == "succeeded" for view in views) else 1


def _fresh(out_dir: Path) -> None:
    for name in (
        "images",
        "imagegen.db",
        "imagegen.db-wal",
        "imagegen.db-shm",
        "manifest.jsonl",
        "broker",
    ):
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


@contextmanager
def _simulator() -> Iterator[str]:
    # generation times shortened from the provider's 15-60 s so the demo takes seconds
    config = SimulatorConfig(
        api_keys=frozenset({DEMO_KEY}), latency=parse_latency(["1080p=1-3", "2K=2-4", "4K=3-5"])
    )
    running = serve_in_thread(config)
    try:
        yield running.base_url
    finally:
        running.stop()


def _configure(out_dir: Path, base_url: str) -> None:
    """Point every setting at the local edges (an explicit environment is left alone)."""
    values = {
        "IMAGEGEN_DATA_DIR": str(out_dir),
        "IMAGEGEN_BROKER_URL": "memory://localhost/",  # in this process (a host: kombu wants one)
        "IMAGEGEN_STORAGE_URL": (out_dir / "images").as_uri(),
        "GPTPROTO_BASE_URL": base_url,
        # the local simulator serves the outputs too: trusted, although its address is private
        "IMAGEGEN_TRUSTED_OUTPUT_HOSTS": urlsplit(base_url).netloc,
        "GPTPROTO_API_KEY": DEMO_KEY,
        "IMAGEGEN_POLL_INITIAL_DELAY_S": "1",
        "IMAGEGEN_POLL_INTERVAL_S": "0.5",
        "IMAGEGEN_POLL_MAX_INTERVAL_S": "2",
    }
    os.environ.pop("IMAGEGEN_DATABASE_URL", None)  # the demo always uses its own file
    os.environ.update(values)
    wiring.reset()


def _enqueue(count: int) -> list[uuid.UUID]:
    ids = []
    for n in range(count):
        prompt, ratio, resolution = DEMO_PROMPTS[n % len(DEMO_PROMPTS)]
        ids.append(
            enqueue(
                {
                    "prompt": prompt,
                    "aspect_ratio": ratio,
                    "resolution": resolution,
                    "seed": 1000 + n,
                }
            )
        )
    return ids


def _wait(ids: list[uuid.UUID], console: Console) -> None:
    columns = (
        TextColumn("[bold]generating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + TIMEOUT_S
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("", total=len(ids))
        while time.monotonic() < deadline:
            with session_scope() as session:
                counts = job_store.count_by_status(session, ids)
            done = sum(counts.get(s, 0) for s in TERMINAL)
            summary = "  ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            progress.update(task, completed=done, description=summary)
            if done == len(ids):
                return
            time.sleep(0.2)


def _collect(ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    return [status(job_id, with_events=False) for job_id in ids]


def _write_manifest(out_dir: Path, views: list[dict[str, Any]]) -> Path:
    path = out_dir / "manifest.jsonl"
    with path.open("w") as manifest:
        for view in views:
            line = {
                "id": view["id"],
                "status": view["status"],
                "error_code": view["error_code"],
                "prompt": view["request"]["prompt"],
                "images": [
                    {**img, "path": str(Path(img["bucket"]) / img["key"])} for img in view["images"]
                ],
            }
            manifest.write(json.dumps(line) + "\n")
    return path


def _print_table(views: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="demo jobs", title_justify="left")
    table.add_column("job", no_wrap=True)
    table.add_column("prompt", no_wrap=True, max_width=24, overflow="ellipsis")
    for name in ("ratio", "res", "status", "pixels"):
        table.add_column(name, no_wrap=True, min_width=len(name))
    for view in views:
        request, image = view["request"], (view["images"] or [None])[0]
        pixels = f"{image['width']}x{image['height']}" if image else view["error_code"]
        table.add_row(
            view["id"][:8],
            request["prompt"],
            request["aspect_ratio"],
            request["resolution"],
            view["status"],
            pixels,
        )
    console.print(table)
    for view in views:
        for image in view["images"]:
            path = os.path.relpath(Path(image["bucket"]) / image["key"])
            console.print(f"{view['id'][:8]}  {path}", highlight=False, soft_wrap=True)
