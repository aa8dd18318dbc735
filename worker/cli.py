"""The ``imagegen`` command line. Exit codes: 0 ok, 2 bad input, 1 any other failure."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from worker import jobs
from worker.errors import BadInput, ConfigurationError, ImagegenError, JobNotFound
from worker.settings import get_settings, parse_queues

app = typer.Typer(
    help="Durable text-to-image job queue (GPTProto viduq2).",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(func: F) -> F:
    """Turn the project's errors into a one-line message and the documented exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BadInput as exc:
            for field, rule in exc.problems:
                err.print(f"[red]error:[/] {field}: {rule}", highlight=False)
            raise typer.Exit(2) from None
        except ConfigurationError as exc:
            err.print(f"[red]error:[/] {exc.message}", highlight=False)
            raise typer.Exit(2) from None
        except ImagegenError as exc:
            err.print(f"[red]error:[/] {exc.message}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@db_app.command("upgrade")
@handles_errors
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Create or migrate the job tables (IMAGEGEN_DATABASE_URL, or the embedded file)."""
    from worker.db import upgrade

    upgrade(revision=revision)
    out.print(f"database at revision {revision}")


@app.command()
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
    job_id = jobs.enqueue(request, priority=priority, idempotency_key=idempotency_key)
    if as_json:
        _print_json({"id": str(job_id), "status": "queued"})
    else:
        out.print(str(job_id))


@app.command()
@handles_errors
def status(
    job_id: str | None = typer.Argument(None, help="The job id (none: the queue)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Show a job (state, error, prediction, images, events), or without an id the queue."""
    if job_id is None:
        from worker.cli_admin import print_summary

        return print_summary(as_json)
    view = jobs.status(jobs.parse_job_id(job_id))
    if as_json:
        _print_json(view)
        return
    _print_status(view)


def _print_status(view: dict[str, Any]) -> None:
    out.print(f"[bold]{view['id']}[/]  {view['status']}", highlight=False)
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


@app.command()
@handles_errors
def cancel(
    job_id: str = typer.Argument(..., help="The job id."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Cancel a job: every later step sees it and stops; outputs are not copied."""
    result = jobs.cancel(jobs.parse_job_id(job_id))
    if as_json:
        _print_json({"id": job_id, "status": result})
    else:
        out.print(f"{job_id} {result}")


@app.command()
@handles_errors
def worker(
    concurrency: int | None = typer.Option(
        None, "--concurrency", "-c", help="Parallel tasks (IMAGEGEN_WORKER_CONCURRENCY)."
    ),
    pool: str = typer.Option("threads", help="Celery pool: threads (I/O bound) or prefork."),
    hostname: str | None = typer.Option(None, "--hostname", "-n", help="Worker node name."),
    queues: str | None = typer.Option(
        None,
        "--queues",
        "-Q",
        help="Queues to take tasks from, comma-separated: imagegen (dispatch, submit, poll, "
        "reconcile, webhooks) and imagegen.transfer (copies to storage). Default: both "
        "(IMAGEGEN_WORKER_QUEUES).",
    ),
    loglevel: str | None = typer.Option(None, help="Log level (IMAGEGEN_LOG_LEVEL)."),
    beat: bool | None = typer.Option(
        None,
        "--beat/--no-beat",
        "-B",
        help="Also run the beat (dispatcher and reconciler) here; the default in the embedded "
        "single-machine mode, where no separate `imagegen beat` runs.",
    ),
) -> None:
    """Run a Celery worker that takes jobs through submit, poll and transfer."""
    from worker import metrics
    from worker.celery_app import app as celery
    from worker.logs import configure_from_settings
    from worker.provider.client import ProviderClient

    settings = get_settings()
    try:
        queue_list = parse_queues(queues) if queues is not None else settings.worker_queue_list
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--queues") from None
    ProviderClient.from_settings(settings).close()  # fail now if the key is missing
    json_lines = configure_from_settings(settings, loglevel)
    metrics.serve(settings.metrics_port)  # the threads pool shares it; prefork children don't
    name = hostname or f"imagegen-{socket.gethostname()}-%i"
    argv = [
        "worker",
        "-Q",
        ",".join(queue_list),
        "-P",
        pool,
        "-n",
        name,
        "-c",
        str(concurrency or settings.worker_concurrency),
        "--loglevel",
        (loglevel or settings.log_level).upper(),
        "--without-gossip",
        "--without-mingle",
    ]
    if settings.embedded if beat is None else beat:
        argv += ["--beat", "--schedule", _beat_schedule_file(settings)]
    celery.worker_main(["--quiet", *argv] if json_lines else argv)  # no banner in JSON logs


def _beat_schedule_file(settings: Any) -> str:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return str((settings.data_dir / "beat-schedule").resolve())


@app.command()
@handles_errors
def beat(loglevel: str | None = typer.Option(None, help="Log level (IMAGEGEN_LOG_LEVEL).")) -> None:
    """Run the scheduler of the dispatcher's cycles and the reconciler's passes.

    The dispatcher moves queued jobs into the broker as the fleet's limits allow (every
    IMAGEGEN_DISPATCH_INTERVAL_S); the reconciler finds jobs whose next step is overdue (a
    lost message, a killed worker, a flushed broker) and drives them again. One beat per fleet
    is needed; more are harmless (each cycle and pass takes a lock).
    """
    from worker.celery_app import app as celery
    from worker.logs import configure_from_settings

    settings = get_settings()
    json_lines = configure_from_settings(settings, loglevel)
    celery.start(
        [
            *(["--quiet"] if json_lines else []),
            "beat",
            "--loglevel",
            (loglevel or settings.log_level).upper(),
            "--schedule",
            _beat_schedule_file(settings),
        ]
    )


@app.command()
@handles_errors
def demo(
    jobs_count: int = typer.Option(8, "--jobs", min=1, max=200, help="How many jobs to run."),
    output: str = typer.Option("demo-output", "--out", help="Folder for images and manifest."),
) -> None:
    """Run a small batch end to end on this machine: no servers, no configuration."""
    from worker.demo import run_demo

    raise typer.Exit(run_demo(jobs_count=jobs_count, output=output, console=out))


def _register_simulator() -> None:
    try:
        from simulator.cli import simulator
    except ImportError:  # pragma: no cover - the simulator ships with the package
        return
    app.command("simulator")(simulator)


_register_simulator()


def _register_admin() -> None:
    from worker.cli_admin import register

    register(app)


_register_admin()


@app.command()
@handles_errors
def api(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
    workers: int = typer.Option(1, min=1, help="Server processes."),
) -> None:
    """Serve the HTTP API (bearer tokens from IMAGEGEN_API_TOKENS; docs at /docs)."""
    from api.server import serve

    serve(host=host, port=port, workers=workers)


def _register_producers() -> None:  # `batch submit|status|manifest` and `export`
    from worker.cli_batch import batch_app, export

    app.add_typer(batch_app, name="batch")
    app.command("export")(export)


_register_producers()


def main() -> None:
    app()


__all__ = ["JobNotFound", "app", "main"]
