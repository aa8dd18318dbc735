"""``imagegen batch submit|status|list|cancel|manifest`` and ``imagegen export --batch``.

``batch submit`` validates every line before writing anything: a bad file lists each bad line
(number, field, rule) and exits 2 with nothing enqueued. Waiting shows a progress bar with the
counts by state and an ETA; ``--json`` keeps stdout for one JSON document (the bar goes to
stderr). ``--wait`` exits 0 when every job succeeded and 1 when some failed or were cancelled.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from worker.blobs.storage import store_from_settings
from worker.cli.output import err, handles_errors, metadata_option, out, print_json
from worker.core.batch_input import parse_jsonl
from worker.core.errors import BadInput
from worker.core.settings import get_settings
from worker.service import batch_control, batches, listing
from worker.service.export import export_batch

batch_app = typer.Typer(
    help="Batches: submit a JSONL file, follow it, read its manifest.", no_args_is_help=True
)
_SHORT = {
    "queued": "queued",
    "submitting": "submit",
    "running": "running",
    "transferring": "transfer",
    "succeeded": "ok",
    "failed": "failed",
    "cancelled": "cancelled",
}


@batch_app.command("submit")
@handles_errors
def submit(
    file: Path = typer.Argument(
        ..., help="JSONL: one job per line ('-' reads stdin).", allow_dash=True
    ),
    wait: bool = typer.Option(False, "--wait", help="Follow the batch until every job ended."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
    callback_url: str | None = typer.Option(None, help="Gets a signed batch.completed event."),
    name: str | None = typer.Option(None, help="A label (default: the file name)."),
    deadline_s: float | None = typer.Option(None, help="Deadline of every job, in seconds."),
    idempotency_key: str | None = typer.Option(None, help="Same key and file -> same batch."),
    metadata: str | None = typer.Option(
        None, "--metadata", help="The batch's JSON object (each line's own is merged over it)."
    ),
    max_spend: float | None = typer.Option(
        None, help="Most its submissions may cost (IMAGEGEN_PRICES); past it, jobs wait."
    ),
) -> None:
    """Validate every line, then enqueue them all in one transaction (or none)."""
    with _opened(file) as lines:
        items = _validated(lines)
    receipt = batches.enqueue_batch(
        items,
        name=name or _default_name(file),
        callback_url=callback_url,
        deadline_s=deadline_s,
        idempotency_key=idempotency_key,
        metadata=metadata_option(metadata),
        max_spend=max_spend,
    )
    console = err if as_json else out
    if not as_json:
        state = "enqueued" if receipt.created else "already enqueued (same idempotency key)"
        out.print(f"batch {receipt.batch_id}: {len(receipt.job_ids)} jobs {state}", highlight=False)
    view = follow(receipt.batch_id, console) if wait else batches.batch_status(receipt.batch_id)
    _finish(view, as_json=as_json, waited=wait)


@contextmanager
def _opened(file: Path) -> Iterator[IO[bytes]]:
    if str(file) == "-":
        yield sys.stdin.buffer
        return
    try:
        with file.open("rb") as handle:
            yield handle
    except OSError as exc:
        raise BadInput([("file", f"cannot be read ({exc.strerror})")]) from None


def _validated(lines: IO[bytes]) -> list[Any]:
    try:
        return parse_jsonl(lines, max_jobs=get_settings().batch_max_jobs)
    except BadInput as exc:
        lines_bad = {problem[0] for problem in getattr(exc, "lines", [])}
        if lines_bad:
            err.print(f"{len(lines_bad)} bad line(s); nothing was enqueued", highlight=False)
        raise


def _default_name(file: Path) -> str | None:
    return None if str(file) == "-" else file.name[:200]


def _finish(view: dict[str, Any], *, as_json: bool, waited: bool) -> None:
    if as_json:
        print_json(view)
    elif waited:
        _print_view(view)
    if waited and view["counts"]["succeeded"] != view["total"]:
        raise typer.Exit(1)


@batch_app.command("status")
@handles_errors
def status(
    batch_id: str = typer.Argument(..., help="The batch id."),
    watch: bool = typer.Option(False, "--watch", help="Follow until every job ended."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Counts by state, progress and ETA of a batch."""
    parsed = batches.parse_batch_id(batch_id)
    view = follow(parsed, err if as_json else out) if watch else batches.batch_status(parsed)
    if as_json:
        print_json(view)
    else:
        _print_view(view)


@batch_app.command("list")
@handles_errors
def list_batches(
    limit: int = typer.Option(25, "--limit", min=1, max=200, help="At most this many."),
    cursor: str | None = typer.Option(None, "--cursor", help="next_cursor of a previous page."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Batches newest first: id, name, progress by state, created."""
    page = listing.list_batches(limit=limit, after=cursor)
    if as_json:
        print_json(page)
        return
    out.print(f"{'ID':<36}  {'DONE':>13}  {'STATE':<9}  COUNTS / NAME", highlight=False)
    for view in page["items"]:
        state = "completed" if view["completed"] else "running"
        done = f"{view['done']}/{view['total']}"
        out.print(
            f"{view['id']:<36}  {done:>13}  {state:<9}  {_counts(view)}  {view['name'] or ''}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if page["next_cursor"]:
        out.print(f"more: --cursor {page['next_cursor']}", highlight=False)


@batch_app.command("cancel")
@handles_errors
def cancel(
    batch_id: str = typer.Argument(..., help="The batch id (or its first 8+ characters)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Cancel every job of the batch that has not ended (queued ones at once, those at the
    provider at their next step). Running it again cancels nothing more."""
    done = batch_control.cancel_batch(batches.parse_batch_id(batch_id))
    if as_json:
        print_json({"cancelled": done.jobs, "batch": done.batch})
        return
    out.print(f"batch {done.batch['id']}: {done.jobs} job(s) cancelled", highlight=False)
    _print_view(done.batch)


@batch_app.command("manifest")
@handles_errors
def manifest_command(batch_id: str = typer.Argument(..., help="The batch id.")) -> None:
    """One JSON line per job: index, ref, job id, status, error, S3 keys, sha256, size."""
    for line in batches.manifest(batches.parse_batch_id(batch_id)):
        sys.stdout.write(json.dumps(line) + "\n")


@handles_errors
def export(
    batch: str = typer.Option(..., "--batch", help="The batch id."),
    folder: Path = typer.Argument(..., help="Where to write images and manifest."),
    concurrency: int = typer.Option(8, min=1, max=64, help="Parallel downloads."),
) -> None:
    """Download a batch's images from storage into FOLDER, with manifest.jsonl beside them."""
    batch_id = batches.parse_batch_id(batch)
    total = batches.batch_status(batch_id)["counts"]["succeeded"]
    with Progress(
        TextColumn("[bold]exporting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    ) as bar:
        task = bar.add_task("", total=total)
        result = export_batch(
            batch_id,
            folder,
            store=store_from_settings(get_settings()),
            concurrency=concurrency,
            progress=lambda n: bar.advance(task, n),
        )
    out.print(
        f"{result.files} images ({result.fetched} downloaded) of {result.jobs} jobs in "
        f"{folder}; manifest {folder / 'manifest.jsonl'}",
        highlight=False,
    )
    for failure in result.failures:
        err.print(f"[red]error:[/] {failure}", highlight=False)
    if result.failures:
        raise typer.Exit(1)


# --- following a batch --------------------------------------------------------------------------


def follow(batch_id: Any, console: Console, *, interval_s: float = 1.0) -> dict[str, Any]:
    """Poll the batch until every job ended, with a progress bar; return the last view."""
    view = batches.batch_status(batch_id)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[counts]}"),
        TextColumn("elapsed {task.fields[elapsed]} ETA {task.fields[eta]}"),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(
            view["name"] or "batch", total=view["total"], counts="", eta="-", elapsed="-"
        )
        while True:
            bar.update(
                task,
                completed=view["done"],
                counts=_counts(view),
                eta=_eta(view),
                elapsed=_clock(view["elapsed_s"]),
            )
            if _ended(view):
                return view
            time.sleep(interval_s)
            view = batches.batch_status(batch_id)


def _ended(view: dict[str, Any]) -> bool:
    return bool(view["completed"]) or view["done"] >= view["total"]


def _counts(view: dict[str, Any]) -> str:
    return " ".join(f"{_SHORT[status]} {n}" for status, n in view["counts"].items() if n)


def _eta(view: dict[str, Any]) -> str:
    return "-" if view["eta_s"] is None else _clock(view["eta_s"])


def _clock(seconds_total: float) -> str:
    minutes, seconds = divmod(int(seconds_total), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"


def _print_view(view: dict[str, Any]) -> None:
    state = "completed" if view["completed"] else "in progress"
    out.print(f"[bold]{view['id']}[/] {view['name'] or ''}  {state}", highlight=False)
    out.print(
        f"{view['done']}/{view['total']} done ({view['progress']:.1%})  "
        f"{_counts(view)}  rate {view['rate_per_s']}/s  elapsed "
        f"{_clock(view['elapsed_s'])}  ETA {_eta(view)}",
        highlight=False,
    )
