"""Which callback URLs are accepted, and when a failed delivery is tried again."""

import random

import pytest

from worker.core.settings import Settings
from worker.core.url_policy import callback_problem
from worker.engine.webhook_sender import retry_delay_s


@pytest.mark.parametrize(
    ("url", "http", "private", "problem"),
    [
        ("https://hooks.example.com/x", False, False, None),
        ("http://hooks.example.com/x", False, False, "scheme must be https"),
        ("http://hooks.example.com/x", True, False, None),
        ("https://127.0.0.1/x", False, False, "private, loopback"),
        ("https://10.0.0.8/x", False, False, "private, loopback"),
        ("https://localhost/x", False, False, "local or private"),
        ("https://printer.local/x", False, False, "local or private"),
        ("https://169.254.169.254/latest", False, False, "private"),
        ("http://127.0.0.1:8080/x", True, True, None),
        ("https://user:pw@example.com/x", False, False, "credentials"),
        ("ftp://example.com/x", True, False, "scheme must be https or http"),
        ("https://" + "a" * 2100 + ".com", False, False, "at most 2048"),
        (42, False, False, "must be a string"),
    ],
)
def test_callback_urls(url: object, http: bool, private: bool, problem: str | None) -> None:
    settings = Settings(allow_http_callbacks=http, allow_private_urls=private)
    found = callback_problem(url, settings)
    assert (found is None) if problem is None else (problem in (found or "")), found


@pytest.mark.parametrize(
    ("attempt", "age_s", "low", "high"),
    [
        (1, 0, 4.0, 6.0),
        (2, 10, 8.0, 12.0),
        (4, 100, 32.0, 48.0),
        (20, 1000, 480.0, 600.0),  # capped at max_s (with jitter)
        (30, 3590, 0.0, 10.0),  # never past the give-up time
    ],
)
def test_retry_delay_grows_is_capped_and_bounded(
    attempt: int, age_s: float, low: float, high: float
) -> None:
    delay = retry_delay_s(
        attempt=attempt,
        age_s=age_s,
        base_s=5,
        max_s=500,
        give_up_after_s=3600,
        rng=random.Random(attempt),
    )
    assert delay is not None and low <= delay <= high


def test_retry_gives_up_after_the_window() -> None:
    assert (
        retry_delay_s(
            attempt=3, age_s=3600, base_s=5, max_s=500, give_up_after_s=3600, rng=random.Random(1)
        )
        is None
    )
