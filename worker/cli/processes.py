"""The long-running processes and the schema: ``worker``, ``beat``, ``api`` and
``db upgrade`` (``simulator`` comes from the simulator's own command line).
"""

from __future__ import annotations

import socket
from typing import Any

import typer

from api.server import serve
from worker.broker.app import app as celery
from worker.broker.app import keep_celery_logging_ours
from worker.cli.output import err, handles_errors, out, print_json
from worker.core.settings import Settings, get_settings, parse_queues
from worker.db.schema import upgrade
from worker.provider.client import ProviderClient
from worker.service import preflight
from worker.telemetry import metrics
from worker.telemetry.logs import configure_from_settings

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
@handles_errors
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Create or migrate the job tables (IMAGEGEN_DATABASE_URL, or the embedded file)."""
    upgrade(revision=revision)
    out.print(f"database at revision {revision}")


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
    settings = get_settings()
    try:
        queue_list = parse_queues(queues) if queues is not None else settings.worker_queue_list
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--queues") from None
    ProviderClient.from_settings(settings).close()  # fail now if the key is missing
    _preflight(settings)
    json_lines = configure_from_settings(settings, loglevel)
    keep_celery_logging_ours(json_lines=json_lines)
    metrics.serve(settings.metrics_port, settings.metrics_addr)  # prefork children don't
    name = hostname or default_worker_name()
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
    # no banner in JSON logs; Celery's exit code is the command's, so that a worker stopped by
    # an error (not by a signal) exits non-zero and a supervisor restarts it
    _exit_with(celery.start(["--quiet", *argv] if json_lines else argv))


def _exit_with(code: Any) -> None:
    """Leave with the exit code Celery returned (``Celery.start`` returns it, and
    ``worker_main`` drops it: a worker that died of an error used to exit 0)."""
    if code:
        raise typer.Exit(code if isinstance(code, int) else 1)


def _preflight(settings: Settings) -> None:
    """Check the deployment before taking work: stop on what a worker cannot work without
    (database, broker, key); pause submissions fleet-wide while storage cannot be written."""
    checks = preflight.run(settings)
    for check in checks:
        if not check.ok:
            err.print(
                f"[red]preflight:[/] {check.name}: {check.line}", highlight=False, soft_wrap=True
            )
    if any(not check.ok and check.fatal for check in checks):
        raise typer.Exit(1)
    if preflight.pause_if_storage_down(checks):
        err.print(
            "[yellow]preflight:[/] submissions are paused until storage takes a write "
            "(checked every reconciler pass); polls and copies go on",
            highlight=False,
        )


@handles_errors
def check(as_json: bool = typer.Option(False, "--json", help="Print a JSON object.")) -> None:
    """Check the deployment: database (reachable, at the migration head), broker, bucket (a
    write and a delete under the prefix), provider key. One line per check; exit 1 if any
    failed (for operators and health checks)."""
    checks = preflight.run(get_settings())
    if as_json:
        print_json({"ok": all(c.ok for c in checks), "checks": [c.as_dict() for c in checks]})
    else:
        for c in checks:
            mark = "[green]ok[/]  " if c.ok else "[red]FAIL[/]"
            out.print(f"{mark} {c.name:<9} {c.line}", highlight=False, soft_wrap=True)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


def default_worker_name() -> str:
    """The worker's node name unless ``--hostname`` gives one (``imagegen health worker``
    pings the same)."""
    return f"imagegen-{socket.gethostname()}-%i"


def _beat_schedule_file(settings: Any) -> str:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return str((settings.data_dir / "beat-schedule").resolve())


@handles_errors
def beat(loglevel: str | None = typer.Option(None, help="Log level (IMAGEGEN_LOG_LEVEL).")) -> None:
    """Run the scheduler of the dispatcher's cycles and the reconciler's passes.

    The dispatcher moves queued jobs into the broker as the fleet's limits allow (every
    IMAGEGEN_DISPATCH_INTERVAL_S); the reconciler finds jobs whose next step is overdue (a
    lost message, a killed worker, a flushed broker) and drives them again. One beat per fleet
    is needed; more are harmless (each cycle and pass takes a lock).
    """
    settings = get_settings()
    json_lines = configure_from_settings(settings, loglevel)
    keep_celery_logging_ours(json_lines=json_lines)
    _exit_with(
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
    )


@handles_errors
def api(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
    workers: int = typer.Option(1, min=1, help="Server processes."),
) -> None:
    """Serve the HTTP API (bearer tokens from IMAGEGEN_API_TOKENS; docs at /docs)."""
    serve(host=host, port=port, workers=workers)
