"""The URL policy: one rule for every URL the system did not choose itself.

Producers hand in reference images and webhook targets; the provider answers with output
URLs. All of them pass the same checks here, and the same address rule again at connect time
(``worker.egress``), so a look-up that changes between the two cannot reach a private address:

- the scheme is https (http where a setting allows it), no credentials, at most
  :data:`MAX_URL_LENGTH` characters;
- the host is a valid DNS name (every label 1-63 characters, IDNA for non-ASCII names, a
  well-formed ``xn--`` label) or an IP address;
- an address, written in any form the system resolver accepts (``2130706433``,
  ``0x7f000001``, ``0177.0.0.1``, ``127.1``, ``[::ffff:127.0.0.1]``), is read the way the
  resolver reads it and refused unless it is global; IPv6 forms that carry an IPv4 address
  (mapped, compatible, NAT64, 6to4, Teredo) are unwrapped and the inner address must be global
  too;
- names that are obviously local (``localhost``, ``*.internal`` ...) are refused without a
  look-up (names are resolved only where they are fetched: look-ups may not be possible where
  jobs are enqueued).

Pure: no I/O (``socket.inet_aton`` only parses).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any
from urllib.parse import urlsplit

import idna

from worker.core.errors import BadInput
from worker.core.settings import Settings

MAX_URL_LENGTH = 2048
MAX_HOST_LENGTH = 253
PRIVATE = "must not point to a private, loopback or reserved address"
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# --- addresses -----------------------------------------------------------------------------------


def address_problem(address: str | IPAddress) -> str | None:
    """Why connecting to ``address`` is refused (not global, also inside), or None."""
    try:
        ip = ipaddress.ip_address(str(address).split("%", 1)[0])
    except ValueError:
        return "must be a valid IP address"
    if any(not candidate.is_global for candidate in (ip, *embedded_ipv4(ip))):
        return PRIVATE
    return None


def embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    inner: list[ipaddress.IPv4Address] = []
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        inner.append(ip.ipv4_mapped)
    if int(ip) >> 32 == 0 and int(ip) > 1:  # IPv4-compatible ::a.b.c.d (deprecated)
        inner.append(low32)
    if ip in _NAT64:
        inner.append(low32)
    if ip.sixtofour is not None:
        inner.append(ip.sixtofour)
    if ip.teredo is not None:
        inner.extend(ip.teredo)
    return inner


def literal_address(host: str) -> IPAddress | None:
    """The address a host written as an IP literal stands for, in any form the resolver reads
    (dotted, integer, hex, octal, short forms); None for a name."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if not host or not host[0].isdigit():
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


# --- host names ----------------------------------------------------------------------------------


def host_problem(host: str, *, allow_private: bool = False) -> str | None:
    """Why a URL's host is refused (syntax, local name, non-global address), or None."""
    name = host.rstrip(".").lower() if host != "." else ""
    if not name:
        return "must include a host name"
    address = literal_address(name)
    if address is not None:
        return None if allow_private else address_problem(address)
    problem = _name_problem(name)
    if problem or allow_private:
        return problem
    if name in _LOCAL_NAMES or name.endswith(_LOCAL_SUFFIXES):
        return "must not point to a local or private host"
    return None


def _name_problem(name: str) -> str | None:
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            return "must have a valid host name"
    if len(name) > MAX_HOST_LENGTH:
        return f"must have a host name of at most {MAX_HOST_LENGTH} characters"
    labels = name.split(".")
    for label in labels:
        if not _LABEL.fullmatch(label):
            return "must have a valid host name (labels of 1-63 letters, digits or hyphens)"
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError):
                return "must have a valid host name (malformed xn-- label)"
    if labels[-1].isdigit():
        return "must have a valid host name or IP address"
    return None


# --- URLs ----------------------------------------------------------------------------------------


def url_problem(
    url: str, *, allow_private: bool = False, schemes: tuple[str, ...] = ("https",)
) -> str | None:
    """Return why ``url`` is refused, or None when it is acceptable."""
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters"
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in url):
        return "must not contain spaces or control characters"
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
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials"
    return host_problem(host, allow_private=allow_private)


def callback_problem(url: Any, settings: Settings) -> str | None:
    """Why a callback URL is refused (scheme, host, private address), or None."""
    if not isinstance(url, str):
        return "must be a string"
    if "\x00" in url:
        return "must not contain NUL characters"
    return url_problem(
        url, allow_private=settings.allow_private_urls, schemes=callback_schemes(settings)
    )


def callback_schemes(settings: Settings) -> tuple[str, ...]:
    return ("https", "http") if settings.allow_http_callbacks else ("https",)


def check_callback_url(url: Any, settings: Settings) -> str | None:
    """The URL itself if acceptable (None stays None); raise :class:`BadInput` otherwise."""
    if url is None:
        return None
    problem = callback_problem(url, settings)
    if problem:
        raise BadInput([("callback_url", problem)])
    return str(url)
