"""Producers' and operators' commands about jobs: ``enqueue``, ``status``, ``cancel``,
``jobs list`` and ``retry``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import typer
from rich.table import Table

from models.base import utcnow
from worker.cli.operator import print_summary
from worker.cli.output import ago, handles_errors, metadata_option, out, parse_id, print_json
from worker.core.errors import BadInput
from worker.core.timespec import parse_since
from worker.service import jobs
from worker.service import operator as admin

jobs_app = typer.Typer(help="Look at jobs.", no_args_is_help=True)


@handles_errors
def enqueue(
    prompt: str = typer.Argument(..., help="What to draw (1-2000 characters)."),
    aspect_ratio: str = typer.Option(
        "1:1", "--aspect-ratio", "-a", help="1:1 16:9 9:16 4:3 3:4 21:9 2:3 3:2 auto"
    ),
    resolution: str = typer.Option("1080p", "--resolution", "-r", help="1080p, 2K or 4K"),
    seed: int | None = typer.Option(None, help="1 to 2147483647 (1 means random)."),
    image: list[str] = typer.Option(
        [], "--image", "-i", help="Reference image: https URL or data URI (up to 7)."
    ),
    priority: str = typer.Option("interactive", help="interactive or batch"),
    idempotency_key: str | None = typer.Option(None, help="Same key -> same job."),
    metadata: str | None = typer.Option(
        None, "--metadata", help='Your own JSON object, e.g. \'{"order": "1234"}\'.'
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Enqueue one generation job and print its id."""
    request: dict[str, Any] = {
        "prompt": prompt,
        "aspect_ratio": aspect_ratio,
        "resolution": resolution,
    }
    if seed is not None:
        request["seed"] = seed
    if image:
        request["images"] = image
    job_id = jobs.enqueue(
        request,
        priority=priority,
        idempotency_key=idempotency_key,
        metadata=metadata_option(metadata),
    )
    if as_json:
        print_json({"id": str(job_id), "status": "queued"})
    else:
        out.print(str(job_id))


@handles_errors
def status(
    job_id: str | None = typer.Argument(None, help="The job id (none: the queue)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Show a job (state, error, prediction, images, events), or without an id the queue."""
    if job_id is None:
        return print_summary(as_json)
    view = jobs.status(jobs.parse_job_id(job_id))
    if as_json:
        print_json(view)
        return
    _print_status(view)


def _print_status(view: dict[str, Any]) -> None:
    waiting = f"  (waiting: {view['waiting']})" if view.get("waiting") else ""
    out.print(
        f"[bold]{view['id']}[/]  {view['status']}{waiting}  tenant {view.get('tenant', '-')}",
        highlight=False,
    )
    if view["error_code"] or view["error_message"]:
        out.print(f"error: {view['error_code']}: {view['error_message']}", highlight=False)
    out.print(
        f"prediction {view['prediction_id'] or '-'}  attempts {view['attempts']}  "
        f"polls {view['poll_count']}  ambiguous submits {view['ambiguous_submits']}",
        highlight=False,
    )
    for image in view["images"]:
        out.print(
            f"image {image['index']}: {image['bucket']}/{image['key']} "
            f"{image['width']}x{image['height']} {image['bytes']} bytes "
            f"sha256 {image['sha256'][:16]}...",
            highlight=False,
        )
    table = Table("at", "event", "from", "to", "detail", box=None)
    for item in view.get("events", []):
        table.add_row(
            item["at"][11:23],
            item["event"],
            item["from"] or "",
            item["to"] or "",
            json.dumps(item["detail"]) if item["detail"] else "",
        )
    out.print(table)


@handles_errors
def cancel(
    job_id: str = typer.Argument(..., help="The job id."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Cancel a job: every later step sees it and stops; outputs are not copied."""
    found = jobs.parse_job_id(job_id)
    result = jobs.cancel(found)
    if as_json:
        print_json({"id": str(found), "status": result})
    else:
        out.print(f"{found} {result}")


@jobs_app.command("list")
@handles_errors
def list_jobs(
    status: list[str] = typer.Option(
        [], "--status", "-s", help="Only these states (repeat or comma-separate)."
    ),
    batch: str | None = typer.Option(None, "--batch", help="Only the jobs of this batch id."),
    since: str | None = typer.Option(
        None, "--since", help="Created in the last 2h / 7d, or after an ISO time."
    ),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000, help="At most this many."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """List jobs, newest first."""
    statuses = [part.strip() for item in status for part in item.split(",") if part.strip()]
    views = admin.list_jobs(
        statuses=statuses,
        batch_id=parse_id(batch, "batch"),
        limit=limit,
        since=parse_since(since, now=utcnow()) if since else None,
    )
    if as_json:
        print_json(views)
        return
    # fixed columns, one job per line, ids whole: for eyes, grep and awk alike
    _line("ID", "STATUS", "AGE", "ERROR", "PROMPT")
    for view in views:
        _line(
            view["id"],
            view["status"],
            _age_of(view["created_at"]),
            view["error_code"] or "-",
            _cut(view["request"]["prompt"], 60),
        )


def _line(job_id: str, status: str, age: str, error: str, prompt: str) -> None:
    out.print(
        f"{job_id:<36}  {status:<12}  {age:>7}  {error:<20}  {prompt}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _age_of(iso: str) -> str:
    return ago((utcnow() - datetime.fromisoformat(iso)).total_seconds()).removesuffix(" ago")


@handles_errors
def retry(
    job_id: str | None = typer.Argument(None, help="The failed job to retry."),
    failed: bool = typer.Option(False, "--failed", help="Retry every failed job."),
    batch: str | None = typer.Option(None, "--batch", help="With --failed: of this batch only."),
    code: str | None = typer.Option(None, "--code", help="With --failed: with this error code."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Send failed jobs back to the queue for a fresh start.

    Counters, error and prediction are reset and the deadline renewed; each job's event log
    records the retry. Retrying creates a new paid prediction per job.
    """
    _check_retry_args(job_id, failed, batch, code)
    if job_id is not None:
        found = jobs.parse_job_id(job_id)
        admin.retry_job(found)
        ids = [str(found)]
    else:
        ids = [str(i) for i in admin.retry_failed(batch_id=parse_id(batch, "batch"), code=code)]
    if as_json:
        print_json({"retried": len(ids), "ids": ids})
    else:
        out.print(f"{len(ids)} failed job(s) queued again", highlight=False)


def _check_retry_args(
    job_id: str | None, failed: bool, batch: str | None, code: str | None
) -> None:
    if (job_id is None) == (not failed):
        raise BadInput([("job_id", "give either a job id or --failed")])
    if job_id is not None and (batch or code):
        raise BadInput([("--batch/--code", "only go with --failed")])
