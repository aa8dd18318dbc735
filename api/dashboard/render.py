"""Rendering of the dashboard: the Jinja2 templates, their filters and the response headers.

Every page is served with a strict Content-Security-Policy (scripts, styles and images of this
site only: nothing is fetched from elsewhere, no inline script or style) and ``no-store``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
)


def page(
    request: Request, name: str, context: dict[str, Any], *, status_code: int = 200
) -> Response:
    """A rendered template with the dashboard's headers."""
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    return secured(response)


def secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    response.headers["Cache-Control"] = "no-store"
    return response


# --- filters ------------------------------------------------------------------------------------


def _when(value: datetime | str | None) -> str:
    """``2026-11-25 09:34:12 UTC``"""
    if value is None:
        return "-"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso(value: datetime | str | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value.isoformat()


def _duration(seconds: float | None) -> str:
    """``0.4 s``, ``12 s``, ``4 min 05 s``, ``2 h 10 min``, ``3 d 4 h``."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _ago(value: datetime | str | None) -> str:
    if value is None:
        return "-"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return _duration(max((datetime.now(UTC) - moment).total_seconds(), 0.0)) + " ago"


def _filesize(size: int | None) -> str:
    if size is None:
        return "-"
    units = ["B", "KB", "MB", "GB", "TB"]
    power = min(int(math.log(size, 1000)) if size > 0 else 0, len(units) - 1)
    return f"{size} B" if power == 0 else f"{size / 1000**power:.1f} {units[power]}"


def _number(value: int | float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


templates.env.filters.update(
    when=_when,
    iso=_iso,
    duration=_duration,
    ago=_ago,
    filesize=_filesize,
    number=_number,
    percent=_percent,
)
