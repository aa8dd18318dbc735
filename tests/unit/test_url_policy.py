"""One address policy for every URL: producers' reference images and callbacks, the provider's
output URLs, and the addresses they resolve to at connect time."""

from __future__ import annotations

import pytest

from worker.core.request import GenerationRequest
from worker.core.settings import Settings
from worker.core.url_policy import address_problem, callback_problem, url_problem
from worker.egress.guard import AddressGuard, Refused

LOOPBACK_FORMS = [
    "2130706433",  # integer
    "0x7f000001",  # hex
    "0177.0.0.1",  # octal
    "127.1",  # short form
    "127.0.0.1.",  # trailing dot
    "[::127.0.0.1]",  # IPv4-compatible IPv6
    "[64:ff9b::7f00:1]",  # NAT64
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::ffff:7f00:1]",
    "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
    "[::1]",
    "[fe80::1%25eth0]",
    "0",
    "10.1",
]


@pytest.mark.parametrize("host", LOOPBACK_FORMS)
def test_every_spelling_of_a_private_address_is_refused(host: str) -> None:
    url = f"https://{host}/x.png"
    assert "private" in (url_problem(url) or ""), url
    settings = Settings(allow_http_callbacks=True)
    assert "private" in (callback_problem(url, settings) or "")


@pytest.mark.parametrize("host", LOOPBACK_FORMS)
def test_reference_images_use_the_same_policy(host: str) -> None:
    fields = {"prompt": "a cat", "images": [f"https://{host}/ref.png"]}
    with pytest.raises(Exception, match="images"):
        GenerationRequest.model_validate(fields)


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("xn--", "valid host name"),
        ("xn--zz.example.com", "malformed xn-- label"),
        ("a" * 64 + ".example.com", "valid host name"),
        ("a..example.com", "valid host name"),
        ("-bad.example.com", "valid host name"),
        ("1.2.3.4.5", "valid host name or IP address"),
        ("b\u00fccher..example", "valid host name"),
    ],
)
def test_host_names_the_resolver_cannot_take_are_refused_at_once(host: str, problem: str) -> None:
    assert problem in (url_problem(f"https://{host}/h") or "")


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/x",
        "https://b\u00fccher.example/x",
        "https://xn--bcher-kva.example/x",
        "https://cdn_1.example.com/x",
        "https://8.8.8.8/x",
        "https://[2606:4700::1111]/x",
    ],
)
def test_public_names_and_addresses_pass(url: str) -> None:
    assert url_problem(url) is None


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.7",
        "169.254.169.254",
        "::1",
        "::127.0.0.1",
        "64:ff9b::a00:7",
        "::ffff:192.168.1.1",
        "2002:c0a8:101::",
        "100.64.0.1",
        "fe80::1%eth0",
    ],
)
def test_address_policy_unwraps_and_refuses(address: str) -> None:
    assert address_problem(address) is not None


def test_address_policy_passes_public_addresses() -> None:
    for address in ("8.8.8.8", "2606:4700::1111", "64:ff9b::808:808", "::ffff:8.8.8.8"):
        assert address_problem(address) is None, address


def test_the_guard_checks_every_resolved_address() -> None:
    guard = AddressGuard(resolver=lambda host, port: ["8.8.8.8", "10.0.0.7"])
    with pytest.raises(Refused, match=r"private.*10\.0\.0\.7"):
        guard.addresses("cdn.example.com", 443)
    public = AddressGuard(resolver=lambda host, port: ["8.8.8.8"])
    assert public.addresses("cdn.example.com", 443) == ["8.8.8.8"]


def test_trusted_hosts_are_exact_and_allow_http() -> None:
    guard = AddressGuard(trusted=frozenset({"127.0.0.1:8090"}), resolver=lambda h, p: [h])
    assert guard.url_problem("http://127.0.0.1:8090/out/1.png") is None
    assert guard.addresses("127.0.0.1", 8090) == ["127.0.0.1"]
    assert "scheme must be https" in (guard.url_problem("http://127.0.0.1:8091/x") or "")
    assert "private" in (guard.url_problem("https://127.0.0.1:8091/x") or "")
    with pytest.raises(Refused):
        guard.addresses("127.0.0.1", 6379)
