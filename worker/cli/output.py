"""What every ``imagegen`` command shares: the consoles, JSON output, the error handling that
turns the project's errors into one line and the documented exit code (0 ok, 2 bad input,
1 any other failure), and how ages and ids are read and shown.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console

from worker.core.errors import AmbiguousId, BadInput, ConfigurationError, ImagegenError
from worker.core.settings import get_settings
from worker.core.untrusted import load_json
from worker.service.health import outage_line
from worker.service.ids import resolve_batch_id

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
        except (ConfigurationError, AmbiguousId) as exc:  # a short id naming several: input
            err.print(f"[red]error:[/] {exc.message}", highlight=False)
            raise typer.Exit(2) from None
        except ImagegenError as exc:
            err.print(f"[red]error:[/] {exc.message}", highlight=False)
            raise typer.Exit(1) from None
        except Exception as exc:  # an unreachable dependency is one line, not a traceback
            line = outage_line(exc, get_settings())
            if line is None:
                raise
            err.print(f"[red]error:[/] {line}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{value}{unit}" for value, unit in parts if value][:2]
    return (" ".join(shown) or "0s") + " ago"


def metadata_option(value: str | None) -> dict[str, Any] | None:
    """``--metadata``: a JSON object as text (checked by the service, field ``metadata``)."""
    if value is None:
        return None
    data = load_json(value, field="metadata")
    if not isinstance(data, dict):
        raise BadInput([("metadata", "must be a JSON object")])
    return data


def parse_id(value: str | None, field: str) -> uuid.UUID | None:
    """A batch id option (``--batch``): the full id or a unique prefix, or None."""
    if value is None:
        return None
    return resolve_batch_id(value, field=field)
