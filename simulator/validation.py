"""Validation of the submit body, as section 1 of the provider contract states it.

Each rule names the field it checks; the app answers a violation with HTTP 400 and the contract's
error body. Unknown fields are ignored, and a field sent as ``null`` counts as absent.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from simulator.images import ASPECT_RATIOS, RESOLUTIONS, normalize_resolution

MAX_BODY_BYTES = 20 * 1024 * 1024
MAX_PROMPT_CHARS = 2000
MAX_IMAGES = 7
MAX_SEED = 2_147_483_647
_DATA_URI = re.compile(r"^data:image/(png|jpeg|jpg|webp);base64,[A-Za-z0-9+/=\s]+$")


class InvalidRequest(ValueError):
    """The submit body breaks a rule of the contract; the message names field and rule."""


@dataclass(frozen=True, slots=True)
class SubmitParams:
    """A valid submit, normalized (resolution in its canonical case, defaults filled in)."""

    prompt: str
    aspect_ratio: str = "1:1"
    resolution: str = "1080p"
    seed: int = 1
    image_count: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The parameters as JSON."""
        return asdict(self)


def parse_submit(raw: bytes) -> SubmitParams:
    """Parse and check a submit body; raises InvalidRequest."""
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequest(f"request body exceeds {MAX_BODY_BYTES} bytes")
    body = _json_object(raw)
    return SubmitParams(
        prompt=_prompt(body.get("prompt")),
        aspect_ratio=_aspect_ratio(body.get("aspect_ratio")),
        resolution=_resolution(body.get("resolution")),
        seed=_seed(body.get("seed")),
        image_count=_images(body.get("images")),
    )


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body


def _prompt(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest("prompt is required and must be a non-empty string")
    if len(value) > MAX_PROMPT_CHARS:
        raise InvalidRequest(f"prompt must be at most {MAX_PROMPT_CHARS} characters")
    return value


def _aspect_ratio(value: Any) -> str:
    if value is None:
        return "1:1"
    if value not in ASPECT_RATIOS:
        raise InvalidRequest(f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}")
    return str(value)


def _resolution(value: Any) -> str:
    if value is None:
        return "1080p"
    canonical = normalize_resolution(value) if isinstance(value, str) else None
    if canonical is None:
        raise InvalidRequest(f"resolution must be one of {', '.join(RESOLUTIONS)} (any case)")
    return canonical


def _seed(value: Any) -> int:
    if value is None:
        return 1
    # bool is an int in Python, but `true` is not a seed.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SEED:
        raise InvalidRequest(f"seed must be an integer from 1 to {MAX_SEED}")
    return value


def _images(value: Any) -> int:
    if value is None:
        return 0
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_IMAGES:
        raise InvalidRequest(f"images must be a list of 1 to {MAX_IMAGES} items")
    for position, item in enumerate(value):
        if not _is_image_reference(item):
            raise InvalidRequest(
                f"images[{position}] must be an https:// URL or a data:image/...;base64, URI"
            )
    return len(value)


def _is_image_reference(item: Any) -> bool:
    if not isinstance(item, str):
        return False
    return (item.startswith("https://") and len(item) > len("https://")) or bool(
        _DATA_URI.match(item)
    )
