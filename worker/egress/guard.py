"""An HTTP client that connects only where the URL policy allows, checked at connect time.

Checking a URL and then letting the HTTP library resolve its host again leaves a window: a DNS
answer that changes in between (rebinding) reaches a private address. Here the check is the
connection: :class:`GuardedBackend` is the network layer of the client's connection pool. It
resolves the host once, refuses unless every address it resolves to passes
:func:`worker.core.url_policy.address_problem`, and connects to one of those checked addresses.
TLS still names the URL's host (SNI and certificate checks) and the Host header is the URL's:
only the address look-up is taken out of the library's hands. Every redirect hop is a new
request through the same pool, so each hop is checked the same way (and its URL against the
policy by :meth:`AddressGuard.check_url`, a request hook).

Hosts named in ``trusted`` (``host`` or ``host:port``, from a setting such as
``IMAGEGEN_TRUSTED_OUTPUT_HOSTS``) may resolve to private addresses and use plain http: the
simulator on 127.0.0.1 in tests, a provider reached over a private network. ``allow_private``
lifts the address rule for every host (``IMAGEGEN_ALLOW_PRIVATE_URLS``, for webhooks to local
receivers). Neither is on by default.
"""

from __future__ import annotations

import socket
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpcore
import httpx

from worker.core.url_policy import address_problem, url_problem

#: ``resolve(host, port)``: the addresses to connect to, in order (``socket.getaddrinfo``).
Resolve = Callable[[str, int], list[str]]
MAX_REDIRECTS = 5


class Refused(Exception):
    """The URL or an address it resolves to is not allowed; nothing was sent."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


@dataclass(frozen=True)
class AddressGuard:
    """Which hosts and addresses a client may connect to."""

    #: Schemes allowed for hosts that are not trusted.
    schemes: tuple[str, ...] = ("https",)
    allow_private: bool = False
    #: ``host`` or ``host:port`` entries that may be private and plain http.
    trusted: frozenset[str] = frozenset()
    resolver: Resolve = field(default=resolve, compare=False)

    def is_trusted(self, host: str, port: int) -> bool:
        host = host.strip("[]").rstrip(".").lower()
        return host in self.trusted or f"{host}:{port}" in self.trusted

    def url_problem(self, url: str) -> str | None:
        """Why ``url`` may not be requested (before any look-up), or None."""
        try:
            parts = urlsplit(url)
            trusted = self.is_trusted(
                parts.hostname or "", parts.port or _default_port(parts.scheme)
            )
        except ValueError:
            return "must be a valid URL"
        if trusted:
            return url_problem(url, allow_private=True, schemes=("https", "http"))
        return url_problem(url, allow_private=self.allow_private, schemes=self.schemes)

    def check_url(self, url: str) -> None:
        problem = self.url_problem(url)
        if problem:
            raise Refused(f"URL {problem}")

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for ``host``: all of them checked, or :class:`Refused`."""
        try:
            found = self.resolver(host, port)
        except UnicodeError:
            raise Refused("host name is not valid") from None
        except OSError as exc:  # the look-up failed: a connection error, worth a retry
            raise httpcore.ConnectError(f"could not resolve the host: {exc}") from None
        if self.allow_private or self.is_trusted(host, port):
            return found
        for address in found:
            if address_problem(address):
                raise Refused(
                    f"the host resolves to a private, loopback or reserved address ({address})"
                )
        return found


class GuardedBackend(httpcore.NetworkBackend):
    """The connection pool's network layer: resolve once, check, connect to what was checked."""

    def __init__(self, guard: AddressGuard) -> None:
        self._guard = guard
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        failure: Exception | None = None
        for address in self._guard.addresses(host, port):
            try:
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"no address found for {host}")

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise Refused("unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` whose pool connects through a :class:`GuardedBackend`.

    No proxies from the environment: a proxy would connect on the client's behalf, beyond
    the guard's reach."""

    def __init__(self, guard: AddressGuard, *, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(guard),
        )


def guarded_client(
    guard: AddressGuard,
    *,
    timeout: httpx.Timeout,
    follow_redirects: bool,
    limits: httpx.Limits | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` whose every request (and redirect hop) passes ``guard``."""
    limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)

    def check(request: httpx.Request) -> None:
        guard.check_url(str(request.url))

    return httpx.Client(
        transport=GuardedTransport(guard, limits=limits),
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=MAX_REDIRECTS,
        headers=headers,
        trust_env=False,
        event_hooks={"request": [check]},
    )
