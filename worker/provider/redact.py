"""Make provider text safe to put into an error message: no secrets, no markup, bounded length.

Everything the provider sends back is untrusted text that ends up in job rows, logs and
alerts, so it passes through :func:`safe_text` first.
"""

from __future__ import annotations

import re

#: Longest provider message kept in an error (operators need the gist, not a page).
MAX_MESSAGE_CHARS = 300
#: Shorter secrets would scrub ordinary words out of messages; real keys are far longer.
_MIN_SECRET_CHARS = 4

_KEY_LIKE = re.compile(r"sk-[A-Za-z0-9][A-Za-z0-9_\-]{3,}")
_BEARER = re.compile(r"(?i)\bbearer\s+[^\s\"',;]+")
_SPACES = re.compile(r"\s+")


def scrub(text: str, secret: str | None = None) -> str:
    """Remove the API key and anything that looks like a key or a bearer credential."""
    if secret and len(secret) >= _MIN_SECRET_CHARS:
        text = text.replace(secret, "***")
    text = _BEARER.sub("Bearer ***", text)
    return _KEY_LIKE.sub("sk-***", text)


def shorten(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Collapse whitespace and cut to ``limit`` characters, marking the cut."""
    text = _SPACES.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def safe_text(text: str, secret: str | None = None, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Scrub, then shorten (in that order, so a cut can never leave half a key behind)."""
    return shorten(scrub(text, secret), limit)
