"""The ``imagegen`` command line: the root of the commands, one module per group beside it
(``jobs``, ``operator``, ``batches``, ``webhooks``, ``keys`` (keys, budgets, spend),
``processes``, ``demo``; what they share in ``output``).

Exit codes: 0 ok, 2 bad input, 1 any other failure. ``main`` wires the Celery broker into the
process (``worker.core.ports``) before any command runs.
"""

from __future__ import annotations

import typer

from simulator.cli import simulator
from worker.broker.tasks import install_ports
from worker.cli import batches, demo, health, jobs, keys, operator, processes, webhooks

app = typer.Typer(
    help="Durable text-to-image job queue (GPTProto viduq2).",
    no_args_is_help=True,
    add_completion=False,
)
# the order of ``imagegen --help``
app.command()(jobs.enqueue)
app.command()(jobs.status)
app.command()(jobs.cancel)
app.command()(processes.worker)
app.command()(processes.beat)
app.command()(demo.demo)
app.command("simulator")(simulator)
app.command()(jobs.retry)
app.command()(operator.prune)
app.command()(operator.pause)
app.command()(operator.resume)
app.command()(processes.api)
app.command()(processes.check)
app.command("export")(batches.export)
app.command("spend")(keys.spend_command)
app.add_typer(processes.db_app, name="db")
app.add_typer(jobs.jobs_app, name="jobs")
app.add_typer(batches.batch_app, name="batch")
app.add_typer(health.health_app, name="health")
app.add_typer(webhooks.webhooks_app, name="webhooks")
app.add_typer(keys.keys_app, name="keys")
app.add_typer(keys.budgets_app, name="budgets")


def main() -> None:
    install_ports()
    app()
