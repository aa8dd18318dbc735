"""The ``imagegen simulator`` command (registered by ``worker/cli.py``; ``python -m simulator``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import ValidationError

from simulator.config import SimulatorConfig, parse_latency
from simulator.faults import PRESETS, parse_profile
from simulator.server import run


def simulator(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8090,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    latency: Annotated[
        list[str] | None,
        typer.Option(
            "--latency",
            metavar="RES=MIN-MAX",
            help="Generation time in seconds per resolution, e.g. 1080p=1-3, 4K=0, '*=0' for all. "
            "Repeatable.",
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            help=f"Fault profile: presets ({', '.join(PRESETS)}) and/or name=probability items, "
            "comma separated, e.g. 'flaky,stuck=0.01'. See GET /_sim/faults."
        ),
    ] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            help="Accepted API key (repeatable); default: any key starting with sk-.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of latency and fault draws.")] = 0,
    noise: Annotated[
        bool, typer.Option(help="Incompressible pictures of realistic size (10-25 MB at 4K).")
    ] = False,
    queue_s: Annotated[
        float | None, typer.Option(help="Seconds a prediction stays 'created' before 'processing'.")
    ] = None,
    ghost_delay_s: Annotated[
        float | None, typer.Option(help="Seconds a ghost_slow submit takes to answer.")
    ] = None,
    submit_delay_s: Annotated[
        float | None, typer.Option(help="Extra seconds before every submit is answered.")
    ] = None,
    poll_delay_s: Annotated[
        float | None, typer.Option(help="Extra seconds before every poll is answered.")
    ] = None,
    output_base_url: Annotated[
        str | None,
        typer.Option(help="Base of output URLs (another host name); default: the server's own."),
    ] = None,
    max_concurrency: Annotated[
        int | None,
        typer.Option(help="Account concurrency limit: predictions created or processing at once."),
    ] = None,
    over_concurrency: Annotated[
        str | None,
        typer.Option(
            help="Over the concurrency limit: 'queue' (wait in created) or 'reject' (429)."
        ),
    ] = None,
    submit_rate: Annotated[
        float | None,
        typer.Option(help="Account submit rate limit, submits per second (429 over it)."),
    ] = None,
    submit_burst: Annotated[
        int | None, typer.Option(help="Submits the rate limit lets through at once.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the GPTProto viduq2 simulator: the provider's API over real HTTP, with fault injection.

    Force a fault on one prediction: put sim:NAME in square brackets in its prompt.
    GET /_sim/faults lists the faults; the admin API under /_sim/ shows what happened.
    """
    options: dict[str, Any] = {
        "api_keys": api_key or [],
        "seed": seed,
        "noise": noise,
        "queue_s": queue_s,
        "ghost_delay_s": ghost_delay_s,
        "submit_delay_s": submit_delay_s,
        "poll_delay_s": poll_delay_s,
        "output_base_url": output_base_url,
        "max_concurrency": max_concurrency,
        "over_concurrency": over_concurrency,
        "submit_rate": submit_rate,
        "submit_burst": submit_burst,
    }
    config = build_config(options, latency=latency or [], profile=profile)
    typer.echo(f"GPTProto simulator on http://{host}:{port} (admin API under /_sim/)")
    run(host, port, config, log_level=log_level)


def build_config(
    options: dict[str, Any], *, latency: list[str], profile: str | None
) -> SimulatorConfig:
    """A config from CLI values (None means the default); bad values raise typer.BadParameter."""
    values = {name: value for name, value in options.items() if value is not None}
    try:
        if latency:
            values["latency"] = parse_latency(latency)
        if profile:
            values["profile"] = parse_profile(profile)
        return SimulatorConfig.model_validate(values)
    except ValidationError as exc:
        raise typer.BadParameter(_describe(exc)) from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        for error in exc.errors(include_input=False)
    )
