"""Operator commands: ``jobs list``, ``retry``, ``prune``, ``pause``, ``resume`` and the queue
summary of ``status``.

Registered on the main app by ``worker/cli.py``; same exit codes (0 ok, 2 bad input, 1 other).
"""

from __future__ import annotations

import getpass
import uuid
from datetime import datetime, timedelta
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from models import STATUSES
from models.base import utcnow
from worker import admin, retention
from worker.batch_input import text_problem
from worker.cli import _print_json, err, handles_errors, out
from worker.errors import BadInput
from worker.jobs import parse_job_id
from worker.settings import get_settings
from worker.timespec import parse_duration, parse_since

jobs_app = typer.Typer(help="Look at jobs.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")
    app.command("retry")(retry)
    app.command("prune")(prune)
    app.command("pause")(pause)
    app.command("resume")(resume)


# --- status (no job id) -------------------------------------------------------------------------


def print_summary(as_json: bool) -> None:
    """The queue at a glance (``imagegen status`` without a job id)."""
    view = admin.summary()
    if as_json:
        _print_json(view)
        return
    counts = view["counts"]
    table = Table("state", "jobs", box=None)
    for status in STATUSES:
        table.add_row(status, str(counts[status]))
    table.add_row("[bold]total[/]", str(view["total"]))
    out.print(table)
    out.print(
        f"in flight at the provider: {view['in_flight']}   queued and due now: "
        f"{view['queued_due']}   oldest queued: {_ago(view['oldest_queued_age_s'])}",
        highlight=False,
        soft_wrap=True,
    )
    print_fleet(view["fleet"])
    if view["failed_by_code"]:
        codes = ", ".join(f"{code} {n}" for code, n in sorted(view["failed_by_code"].items()))
        out.print(f"failed by code: {codes}", highlight=False, soft_wrap=True)


def print_fleet(fleet: dict[str, Any]) -> None:
    """Submissions paused or not (and why), breaker, cool-down, rate and work in flight."""
    if fleet["paused"]:
        out.print(
            f"[bold red]submissions PAUSED[/] ({fleet['pause_code']}, by "
            f"{fleet['paused_by']}): {escape(fleet['reason'] or '')}",
            soft_wrap=True,
        )
    else:
        out.print("submissions: running", highlight=False)
    breaker = fleet["breaker"]
    line = f"breaker: {breaker}"
    if breaker != "closed" and fleet["breaker_reason"]:
        line += f" ({fleet['breaker_reason']})"
    if fleet["cooldown_until"]:
        line += f"   cooling down after a 429 until {fleet['cooldown_until']}"
    rate = fleet["submit_rate"]
    line += f"   submit rate: {'unlimited' if not rate else f'{rate:.2f}/s'}"
    line += f"   in flight: {fleet['in_flight']}/{fleet['max_in_flight']}"
    out.print(line, highlight=False, soft_wrap=True, markup=False)
    if fleet["dispatcher_stale"]:
        last = "never" if fleet["dispatcher_age_s"] is None else _ago(fleet["dispatcher_age_s"])
        out.print(
            f"[yellow]warning:[/] the dispatcher last ran {last}: queued jobs move only "
            "while `imagegen beat` (or `imagegen worker --beat`) runs",
            soft_wrap=True,
        )


# --- pause / resume -----------------------------------------------------------------------------


@handles_errors
def pause(
    reason: str = typer.Option(
        "paused by an operator",
        "--reason",
        help="Why (shown by status, the API and the dashboard).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Stop every submission fleet-wide; polls and transfers of running jobs go on.

    Queued jobs stay queued (none fails because of the pause). `imagegen resume` lets them go.
    """
    from worker import fleet

    if (problem := text_problem(reason, 500)) is not None:
        raise BadInput([("reason", problem)])
    state = fleet.pause(reason, by=_operator()).as_dict()
    if as_json:
        _print_json(state)
    else:
        print_fleet(state)


@handles_errors
def resume(as_json: bool = typer.Option(False, "--json", help="Print a JSON object.")) -> None:
    """Let submissions go again after a pause (by hand, or by the provider's 401/403)."""
    from worker import fleet

    state = fleet.resume(by=_operator()).as_dict()
    if as_json:
        _print_json(state)
    else:
        print_fleet(state)


def _operator() -> str:
    """Who paused or resumed, as recorded: the local user name where there is one."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no user entry (some containers)
        return "cli"


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{value}{unit}" for value, unit in parts if value][:2]
    return (" ".join(shown) or "0s") + " ago"


# --- jobs list ----------------------------------------------------------------------------------


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
        batch_id=_uuid(batch, "batch"),
        limit=limit,
        since=parse_since(since, now=utcnow()) if since else None,
    )
    if as_json:
        _print_json(views)
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
    return _ago((utcnow() - datetime.fromisoformat(iso)).total_seconds()).removesuffix(" ago")


def _uuid(value: str | None, field: str) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise BadInput([(field, "must be an id (a UUID)")]) from None


# --- retry --------------------------------------------------------------------------------------


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
        admin.retry_job(parse_job_id(job_id))
        ids = [job_id]
    else:
        ids = [str(i) for i in admin.retry_failed(batch_id=_uuid(batch, "batch"), code=code)]
    if as_json:
        _print_json({"retried": len(ids), "ids": ids})
    else:
        out.print(f"{len(ids)} failed job(s) queued again", highlight=False)


def _check_retry_args(
    job_id: str | None, failed: bool, batch: str | None, code: str | None
) -> None:
    if (job_id is None) == (not failed):
        raise BadInput([("job_id", "give either a job id or --failed")])
    if job_id is not None and (batch or code):
        raise BadInput([("--batch/--code", "only go with --failed")])


# --- prune --------------------------------------------------------------------------------------


@handles_errors
def prune(
    older_than: str = typer.Option(
        ..., "--older-than", help="Finished longer ago than this: 30d, 12h, 2w."
    ),
    delete_objects: bool = typer.Option(
        False, "--delete-objects", help="Also delete the jobs' images from storage."
    ),
    batch_size: int = typer.Option(
        500, "--batch-size", min=1, max=10_000, help="Jobs deleted per transaction."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only count what would go."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Delete finished jobs older than a cutoff, in bounded batches.

    Succeeded, failed and cancelled jobs that finished before the cutoff go with their events,
    image rows and webhook deliveries; with --delete-objects their stored images too.
    """
    age = parse_duration(older_than, field="older_than")
    found = retention.preview(age)
    if dry_run:
        report = found
    else:
        report = _prune_with_progress(age, delete_objects, batch_size, found.jobs, as_json)
    if as_json:
        _print_json(report.as_dict())
        return
    before = f"finished before {report.cutoff:%Y-%m-%d %H:%M} UTC"
    if dry_run:
        out.print(
            f"would delete {report.jobs} job(s) {before} ({report.images} image(s))",
            highlight=False,
            soft_wrap=True,
        )
        return
    out.print(
        f"deleted {report.jobs} job(s) {before}: {report.events} event(s), "
        f"{report.images} image row(s), {report.objects_deleted} object(s)",
        highlight=False,
        soft_wrap=True,
    )
    if report.objects_skipped:
        err.print(
            f"[yellow]warning:[/] {report.objects_skipped} object(s) in another bucket "
            "were left in place",
            highlight=False,
        )


def _prune_with_progress(
    age: timedelta, delete_objects: bool, batch_size: int, total: int, quiet: bool
) -> retention.PruneReport:
    from worker.storage import store_from_settings

    store = store_from_settings(get_settings()) if delete_objects else None
    plan = retention.PrunePlan(older_than=age, batch_size=batch_size, store=store)
    with Progress(
        TextColumn("pruning"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
        disable=quiet,
    ) as progress:
        task = progress.add_task("prune", total=total)
        return retention.prune(plan, on_batch=lambda r: progress.update(task, completed=r.jobs))
