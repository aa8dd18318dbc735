"""The URL policy: which URLs producers may hand in (reference images, webhook targets).

Refuses schemes other than https, and private, loopback, link-local and other non-public
addresses unless the configuration allows them (SSRF). Host names are checked without DNS
(look-ups may not be possible where jobs are enqueued): names that are obviously local are
refused, and IP literals are checked by range. Callback URLs follow the same rule, with http
allowed by ``IMAGEGEN_ALLOW_HTTP_CALLBACKS`` and private addresses by
``IMAGEGEN_ALLOW_PRIVATE_URLS``; the webhook sender checks again at send time, with the
addresses the host name resolves to.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from worker.core.errors import BadInput
from worker.core.settings import Settings

MAX_URL_LENGTH = 2048
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain")


def url_problem(
    url: str, *, allow_private: bool = False, schemes: tuple[str, ...] = ("https",)
) -> str | None:
    """Return why ``url`` is refused, or None when it is acceptable."""
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return "must be a valid URL"
    if parts.scheme not in schemes:
        return f"scheme must be {' or '.join(schemes)}"
    if not host:
        return "must include a host name"
    if parts.username or parts.password:
        return "must not carry credentials"
    if allow_private:
        return None
    return _host_problem(host.rstrip(".").lower())


def _host_problem(host: str) -> str | None:
    if host in _LOCAL_NAMES or host.endswith(_LOCAL_SUFFIXES):
        return "must not point to a local or private host"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None  # a name; resolved by whoever fetches it
    if not address.is_global:
        return "must not point to a private, loopback or reserved address"
    return None


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
