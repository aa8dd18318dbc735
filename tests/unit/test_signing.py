"""Webhook signatures: HMAC-SHA256 over timestamp + "." + body, checked in constant time."""

import hashlib
import hmac

import pytest

from worker.core.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature,
    signed_headers,
    verify,
)

SECRET = b"whsec-test"
BODY = b'{"id":"1","type":"job.succeeded"}'


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET, b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, 1700000000, BODY) == expected
    headers = signed_headers(SECRET, 1700000000, BODY, event="job.succeeded", delivery_id="1")
    assert headers[SIGNATURE_HEADER] == f"v1={expected}"
    assert headers[TIMESTAMP_HEADER] == "1700000000"


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "now", "valid"),
    [
        (SECRET, "1700000000", BODY, 1700000000, True),
        (SECRET, "1700000000", BODY, 1700000299, True),
        (SECRET, "1700000000", BODY, 1700000301, False),  # too old: a replay
        (SECRET, "1700000000", BODY + b" ", 1700000000, False),  # body changed
        (b"other", "1700000000", BODY, 1700000000, False),  # wrong secret
        (SECRET, "1700000001", BODY, 1700000000, False),  # timestamp changed
        (SECRET, "soon", BODY, 1700000000, False),
    ],
)
def test_verify(secret: bytes, timestamp: str, body: bytes, now: int, valid: bool) -> None:
    header = f"v1={signature(SECRET, 1700000000, BODY)}"
    assert verify(secret, timestamp=timestamp, header=header, body=body, now=now) is valid


def test_verify_accepts_one_of_several_signatures() -> None:
    header = f"v0=abc, v1=0000, v1={signature(SECRET, 5, BODY)}"
    assert verify(SECRET, timestamp="5", header=header, body=BODY, now=5)
