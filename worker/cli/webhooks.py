"""``imagegen webhooks list|redeliver``: the webhook deliveries recorded, and sending them again.

A redelivery is a new attempt of the same delivery (the same event id, ``X-Imagegen-Delivery``),
made by a worker; ``list`` shows each delivery with its last outcome (``--json``: every
attempt).
"""

from __future__ import annotations

import uuid

import typer

from worker.cli.output import handles_errors, out, parse_id, print_json
from worker.core.errors import BadInput
from worker.service import webhooks
from worker.service.ids import resolve_job_id

webhooks_app = typer.Typer(
    help="Webhook deliveries: list them with their attempts, send them again.",
    no_args_is_help=True,
)


@webhooks_app.command("list")
@handles_errors
def list_deliveries(
    status: str | None = typer.Option(None, "--status", help="pending, delivered or failed."),
    job: str | None = typer.Option(None, "--job", help="Only this job's (id or prefix)."),
    batch: str | None = typer.Option(None, "--batch", help="Only this batch's (id or prefix)."),
    limit: int = typer.Option(50, "--limit", min=1, max=200, help="At most this many."),
    cursor: str | None = typer.Option(None, "--cursor", help="next_cursor of a previous page."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object (with attempts)."),
) -> None:
    """Deliveries newest first: id (the event id), status, event, attempts, last outcome."""
    page = webhooks.list_deliveries(
        status=status,
        job_id=resolve_job_id(job) if job else None,
        batch_id=parse_id(batch, "batch"),
        limit=limit,
        after=cursor,
    )
    if as_json:
        print_json(page)
        return
    _line("ID", "STATUS", "EVENT", "TRIES", "LAST", "URL")
    for item in page["items"]:
        last = item["last_status_code"] or item["last_error"] or "-"
        _line(
            item["id"],
            item["status"],
            item["event"],
            str(item["attempt_count"]),
            str(last)[:40],
            item["url"],
        )
    if page["next_cursor"]:
        out.print(f"more: --cursor {page['next_cursor']}", highlight=False)


def _line(*cells: str) -> None:
    delivery_id, status, event, tries, last, url = cells
    out.print(
        f"{delivery_id:<36}  {status:<9}  {event:<15}  {tries:>5}  {last:<40}  {url}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


@webhooks_app.command("redeliver")
@handles_errors
def redeliver(
    delivery_id: str | None = typer.Argument(None, help="The delivery (event) id."),
    failed: bool = typer.Option(False, "--failed", help="Every failed delivery."),
    job: str | None = typer.Option(None, "--job", help="With --failed: of this job only."),
    batch: str | None = typer.Option(None, "--batch", help="With --failed: of this batch only."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Send deliveries again: a new attempt each, with the same event id."""
    if (delivery_id is None) == (not failed):
        raise BadInput([("delivery_id", "give either a delivery id or --failed")])
    if delivery_id is not None and (job or batch):
        raise BadInput([("--job/--batch", "only go with --failed")])
    if delivery_id is not None:
        webhooks.redeliver(_delivery_id(delivery_id))
        ids = [delivery_id]
    else:
        found = webhooks.redeliver_failed(
            job_id=resolve_job_id(job) if job else None, batch_id=parse_id(batch, "batch")
        )
        ids = [str(item) for item in found]
    if as_json:
        print_json({"redelivered": ids})
    else:
        out.print(
            f"{len(ids)} deliver{'y' if len(ids) == 1 else 'ies'} sent again", highlight=False
        )


def _delivery_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise BadInput([("delivery_id", "must be a delivery id (a UUID)")]) from None
