"""Which callback URLs a producer may give: checked like reference images (SSRF).

https only unless ``IMAGEGEN_ALLOW_HTTP_CALLBACKS``; no private, loopback or link-local
address unless ``IMAGEGEN_ALLOW_PRIVATE_URLS``. ``worker.webhooks`` checks again at send time,
with the addresses the host name resolves to.
"""

from __future__ import annotations

from typing import Any

from worker.errors import BadInput
from worker.settings import Settings
from worker.urlcheck import url_problem


def callback_problem(url: Any, settings: Settings) -> str | None:
    """Why a callback URL is refused (scheme, host, private address), or None."""
    if not isinstance(url, str):
        return "must be a string"
    if "\x00" in url:
        return "must not contain NUL characters"
    schemes = ("https", "http") if settings.allow_http_callbacks else ("https",)
    return url_problem(url, allow_private=settings.allow_private_urls, schemes=schemes)


def check_callback_url(url: Any, settings: Settings) -> str | None:
    """The URL itself if acceptable (None stays None); raise :class:`BadInput` otherwise."""
    if url is None:
        return None
    problem = callback_problem(url, settings)
    if problem:
        raise BadInput([("callback_url", problem)])
    return str(url)
