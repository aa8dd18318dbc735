"""Webhook signatures: HMAC-SHA256 over ``timestamp + "." + body``. Pure, no I/O.

The receiver recomputes the signature with the shared secret, compares it in constant time and
refuses timestamps too far from its clock (replays). See README, "Webhooks".
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-Imagegen-Timestamp"
SIGNATURE_HEADER = "X-Imagegen-Signature"
EVENT_HEADER = "X-Imagegen-Event"
DELIVERY_HEADER = "X-Imagegen-Delivery"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``{timestamp}.{body}``."""
    return hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signed_headers(
    secret: bytes, timestamp: int, body: bytes, *, event: str, delivery_id: str
) -> dict[str, str]:
    """Every header of a webhook POST."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "imagegen-queue-webhooks/1",
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"{SCHEME}={signature(secret, timestamp, body)}",
    }


def verify(
    secret: bytes,
    *,
    timestamp: str,
    header: str,
    body: bytes,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """Whether ``header`` holds a valid signature of ``body`` made within the tolerance."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent_at) > tolerance_s:
        return False
    expected = signature(secret, sent_at, body)
    given = [
        part.split("=", 1)[1] for part in header.split(",") if part.strip().startswith(f"{SCHEME}=")
    ]
    return any(hmac.compare_digest(expected, value.strip()) for value in given)
