"""Operators' commands about the fleet: the queue summary of ``status`` (no job id),
``pause``, ``resume`` and ``prune``.
"""

from __future__ import annotations

import getpass
from datetime import timedelta
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from worker.blobs.storage import store_from_settings
from worker.cli.output import ago, err, handles_errors, out, print_json
from worker.core.settings import get_settings
from worker.core.states import STATUSES
from worker.core.timespec import parse_duration
from worker.service import operator as admin
from worker.service import retention


def print_summary(as_json: bool) -> None:
    """The queue at a glance (``imagegen status`` without a job id)."""
    view = admin.summary()
    if as_json:
        print_json(view)
        return
    counts = view["counts"]
    table = Table("state", "jobs", box=None)
    for status in STATUSES:
        table.add_row(status, str(counts[status]))
    table.add_row("[bold]total[/]", str(view["total"]))
    out.print(table)
    out.print(
        f"in flight at the provider: {view['in_flight']}   queued and due now: "
        f"{view['queued_due']}   oldest queued: {ago(view['oldest_queued_age_s'])}",
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
        last = "never" if fleet["dispatcher_age_s"] is None else ago(fleet["dispatcher_age_s"])
        out.print(
            f"[yellow]warning:[/] the dispatcher last ran {last}: queued jobs move only "
            "while `imagegen beat` (or `imagegen worker --beat`) runs",
            soft_wrap=True,
        )


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
    state = admin.pause(reason, by=_operator()).as_dict()
    if as_json:
        print_json(state)
    else:
        print_fleet(state)


@handles_errors
def resume(as_json: bool = typer.Option(False, "--json", help="Print a JSON object.")) -> None:
    """Let submissions go again after a pause (by hand, or by the provider's 401/403)."""
    state = admin.resume(by=_operator()).as_dict()
    if as_json:
        print_json(state)
    else:
        print_fleet(state)


def _operator() -> str:
    """Who paused or resumed, as recorded: the local user name where there is one."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no user entry (some containers)
        return "cli"


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
        print_json(report.as_dict())
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
