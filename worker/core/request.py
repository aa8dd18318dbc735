"""What a producer may ask for: the generation request, validated against the provider contract.

Validation happens before anything is written; every problem names the field and the rule.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from worker.core.errors import BadInput
from worker.core.untrusted import StoredText, text_problem
from worker.core.url_policy import url_problem

MAX_PROMPT_CHARS = 2000
MAX_IMAGES = 7
MAX_BODY_BYTES = 20 * 1024 * 1024
MAX_SEED = 2_147_483_647
_DATA_URI = re.compile(r"^data:image/(png|jpeg|jpg|webp);base64,(?P<payload>.+)$", re.DOTALL)


class AspectRatio(StrEnum):
    SQUARE = "1:1"
    WIDE = "16:9"
    TALL = "9:16"
    LANDSCAPE = "4:3"
    PORTRAIT = "3:4"
    ULTRAWIDE = "21:9"
    PHOTO_PORTRAIT = "2:3"
    PHOTO_LANDSCAPE = "3:2"
    AUTO = "auto"


class Resolution(StrEnum):
    P1080 = "1080p"
    K2 = "2K"
    K4 = "4K"


class Priority(StrEnum):
    INTERACTIVE = "interactive"
    BATCH = "batch"


class GenerationRequest(BaseModel):
    """One text-to-image request, as the provider contract allows it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    images: list[StoredText] | None = Field(default=None, min_length=1, max_length=MAX_IMAGES)
    aspect_ratio: AspectRatio = AspectRatio.SQUARE
    resolution: Resolution = Resolution.P1080
    #: The contract says integer: ``"12"``, ``12.0`` and ``true`` are refused, not converted.
    seed: int | None = Field(default=None, ge=1, le=MAX_SEED, strict=True)

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        if problem := text_problem(value):  # Postgres text cannot hold it
            raise ValueError(problem)
        return value

    @field_validator("resolution", mode="before")
    @classmethod
    def _resolution_any_case(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"1080P": "1080p", "2K": "2K", "4K": "4K"}.get(value.strip().upper(), value)
        return value

    @field_validator("images")
    @classmethod
    def _images_are_safe(cls, value: list[str] | None) -> list[str] | None:
        for item in value or []:
            problem = image_reference_problem(item)
            if problem:
                raise ValueError(problem)
        return value

    def provider_body(self) -> dict[str, Any]:
        """The JSON body the provider expects (defaults sent explicitly, no nulls)."""
        body: dict[str, Any] = {
            "prompt": self.prompt,
            "aspect_ratio": self.aspect_ratio.value,
            "resolution": self.resolution.value,
        }
        if self.images:
            body["images"] = list(self.images)
        if self.seed is not None:
            body["seed"] = self.seed
        return body


def image_reference_problem(item: str, *, allow_private: bool = False) -> str | None:
    """Why a reference image is refused, or None."""
    if not isinstance(item, str):
        return "must be a string"
    if item.startswith("data:"):
        match = _DATA_URI.match(item)
        if not match:
            return "data URI must be data:image/(png|jpeg|jpg|webp);base64,..."
        try:
            base64.b64decode(match["payload"], validate=True)
        except (binascii.Error, ValueError):
            return "data URI payload must be valid base64"
        return None
    problem = url_problem(item, allow_private=allow_private)
    return f"each item must be an https URL or an image data URI ({problem})" if problem else None


def parse_request(data: Any) -> GenerationRequest:
    """Validate raw producer input; raise :class:`BadInput` naming every field and rule."""
    if not isinstance(data, dict):
        raise BadInput([("body", "must be a JSON object")])
    try:
        request = GenerationRequest.model_validate(data)
    except ValidationError as exc:
        raise BadInput(problems_from(exc)) from None
    size = len(json.dumps(request.provider_body()).encode())
    if size > MAX_BODY_BYTES:
        raise BadInput([("body", f"must be at most {MAX_BODY_BYTES} bytes (is {size})")])
    return request


def problems_from(exc: ValidationError) -> list[tuple[str, str]]:
    """Turn pydantic's errors into (field, rule) pairs a person can act on."""
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "body"
        rule = error["msg"]
        if error["type"] == "extra_forbidden":
            rule = "is not a known field"
        elif rule.startswith("Value error, "):
            rule = rule.removeprefix("Value error, ")
        problems.append((field, rule))
    return problems
