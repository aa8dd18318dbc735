"""Checking a webhook request: the recipe of the imagegen-queue README, unchanged."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping


def verify_webhook(
    secret: str, headers: Mapping[str, str], body: bytes, tolerance_s: int = 300
) -> bool:
    """True if ``body`` was signed with ``secret`` less than ``tolerance_s`` seconds ago.

    ``headers``: the request headers (a case-insensitive mapping, as web frameworks give);
    ``body``: the raw bytes, before any JSON parsing.
    """
    timestamp = headers.get("X-Imagegen-Timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance_s:
        return False  # missing, or too old: a replay
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    given = [
        part.strip()[3:]
        for part in headers.get("X-Imagegen-Signature", "").split(",")
        if part.strip().startswith("v1=")
    ]
    return any(hmac.compare_digest(expected, signature) for signature in given)
