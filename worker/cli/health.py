"""``imagegen health worker|beat``: container health checks that prove the process works.

``worker`` pings the worker on this host through the broker: it answers only while its consumer
is connected and its main loop serves (a worker whose metrics thread still answers, with a
lost broker connection, fails it). ``beat`` checks that a dispatch cycle ran recently: the
beat sends one every ``IMAGEGEN_DISPATCH_INTERVAL_S`` and a worker runs it, so a stalled beat
(or no worker taking its messages) fails it. Exit 0 healthy, 1 not.
"""

from __future__ import annotations

import typer

from worker.broker.app import answers_ping, node_name
from worker.cli.output import ago, err, handles_errors, out
from worker.cli.processes import default_worker_name
from worker.service import operator as admin

health_app = typer.Typer(help="Health checks of the long-running processes.", no_args_is_help=True)


@health_app.command("worker")
@handles_errors
def worker(
    hostname: str | None = typer.Option(
        None, "--hostname", "-n", help="The worker's node name (as given to `imagegen worker`)."
    ),
    timeout: float = typer.Option(3.0, min=0.1, help="Seconds to wait for the answer."),
) -> None:
    """Healthy when the worker on this host answers a ping through the broker."""
    name = hostname or default_worker_name()
    if not answers_ping(name, timeout_s=timeout):
        err.print(f"unhealthy: {node_name(name)} did not answer a ping within {timeout} s")
        raise typer.Exit(1)
    out.print(f"{node_name(name)} answered")


@health_app.command("beat")
@handles_errors
def beat() -> None:
    """Healthy when a dispatch cycle ran recently (the beat sends them)."""
    fleet = admin.fleet_state()
    last = "never" if fleet.dispatcher_age_s is None else ago(fleet.dispatcher_age_s)
    if fleet.dispatcher_stale:
        err.print(f"unhealthy: the last dispatch cycle ran {last}")
        raise typer.Exit(1)
    out.print(f"last dispatch cycle {last}")
