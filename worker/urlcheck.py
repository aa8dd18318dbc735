"""Checks for URLs supplied by producers (reference images, later webhook targets).

Refuses schemes other than https, and private, loopback, link-local and other non-public
addresses unless the configuration allows them (SSRF). Host names are checked without DNS
(look-ups may not be possible where jobs are enqueued): names that are obviously local are
refused, and IP literals are checked by range.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

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
