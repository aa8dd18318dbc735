"""Helpers for the dashboard tests: signing in, reading a form's CSRF token, and jobs put in a
given end state directly in the table (with a stored picture where one is asked for)."""

from __future__ import annotations

import hashlib
import io
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from PIL import Image

from models import Job, JobEvent, JobImage
from tests.producers import TOKEN
from worker.db.engine import session_scope

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def sign_in(
    client: httpx.Client, token: str = TOKEN, next_page: str = "/dashboard/"
) -> httpx.Response:
    """Post the sign-in form (without following the redirect)."""
    return client.post(
        "/dashboard/login", data={"token": token, "next": next_page}, follow_redirects=False
    )


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def png(width: int, height: int, color: str = "teal") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


@dataclass(frozen=True)
class Stored:
    """A picture as a worker would have stored it: where, and its bytes."""

    bucket: str
    key: str
    data: bytes
    width: int
    height: int


def finish(
    job_id: uuid.UUID,
    status: str,
    *,
    error_code: str | None = None,
    image: Stored | None = None,
    at: datetime | None = None,
) -> None:
    """Put a job in an end state as the pipeline would leave it (row, event, image row)."""
    now = at or datetime.now(UTC)
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        before = job.status
        job.status, job.finished_at, job.attempts = status, now, 1
        job.submitted_at, job.generated_at = now, now
        job.prediction_id = f"pred-{job_id.hex[:10]}"
        job.error_code = error_code
        job.error_message = f"{error_code}: the simulator said no" if error_code else None
        session.add(
            JobEvent(
                job_id=job_id,
                at=now,
                event=status,
                from_status=before,
                to_status=status,
                detail={"error_code": error_code} if error_code else None,
            )
        )
        if image is not None:
            session.add(
                JobImage(
                    job_id=job_id,
                    idx=0,
                    bucket=image.bucket,
                    key=image.key,
                    content_type="image/png",
                    bytes=len(image.data),
                    sha256=hashlib.sha256(image.data).hexdigest(),
                    width=image.width,
                    height=image.height,
                    source_url="https://cdn.example.com/x.png",
                    nsfw=False,
                )
            )


def stored(bucket: str, key: str, width: int = 1200, height: int = 800) -> Stored:
    """A picture's description (upload ``.data`` yourself where the bytes are needed)."""
    return Stored(bucket, key, png(width, height), width, height)
