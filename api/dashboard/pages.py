"""The dashboard's pages (GET): sign-in, overview, batches, a batch and its gallery, a job.

Each page has a fragment twin that ``static/dashboard.js`` fetches to refresh the live part in
place (the overview always, a running batch's counts, an active job); a fragment answers
``X-Dashboard-Final: 1`` once there is nothing left to follow.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from api.dashboard import data
from api.dashboard.auth import Viewer, require_viewer, safe_next, viewer_of
from api.dashboard.render import page, secured
from api.routes import batches as batch_routes
from worker.core.errors import AmbiguousId, BadInput, BatchNotFound, JobNotFound
from worker.core.states import TERMINAL
from worker.core.untrusted import PG_INT_MAX, text_problem
from worker.service.ids import resolve_any, resolve_batch_id, resolve_job_id
from worker.store import dashboard as q

router = APIRouter(prefix="/dashboard", include_in_schema=False)

#: Fixed messages shown after an action (the query names one; no text is reflected).
NOTICES = {
    "cancelled": "The job was cancelled.",
    "not_cancelled": "The job had already ended; it was left as it is.",
    "retried": "The job was sent back to the queue.",
    "not_retryable": "Only failed jobs can be retried; this one is no longer failed.",
    "paused": "Submissions are paused fleet-wide. Polls and transfers go on.",
    "resumed": "Submissions are running again.",
    "batch_cancelled": "Every job of the batch that had not ended was cancelled.",
    "batch_not_cancelled": "Every job of the batch had already ended; nothing was cancelled.",
}


class NotFoundPage(Exception):
    """An unknown id, shown as a 404 page."""


class BadRequestPage(Exception):
    """A form field or filter that breaks a rule, shown as a 422 page naming both."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")


#: A position in a batch (``batch_index``, a Postgres integer): larger values are refused (422).
Position = Annotated[int | None, Query(ge=0, le=PG_INT_MAX)]


def parse_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFoundPage(f"{value!r} is not an id") from None


@contextmanager
def _found() -> Iterator[None]:
    """Unknown ids are 404 pages; a short id naming several is a 422 page listing them."""
    try:
        yield
    except (JobNotFound, BatchNotFound, BadInput) as exc:
        raise NotFoundPage(str(exc)) from None
    except AmbiguousId as exc:
        raise BadRequestPage(
            exc.field, f"matches several ids: {', '.join(exc.candidates)}"
        ) from None


def _show(request: Request, name: str, viewer: Viewer, nav: str, **context: Any) -> Response:
    notice = NOTICES.get(request.query_params.get("notice", ""))
    return page(request, name, {"viewer": viewer, "nav": nav, "notice": notice, **context})


def _fragment(request: Request, name: str, *, final: bool, **context: Any) -> Response:
    response = page(request, name, context)
    if final:
        response.headers["X-Dashboard-Final"] = "1"
    return response


# --- sign-in ------------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    if viewer_of(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return page(request, "login.html", {"next": safe_next(next), "error": None})


# --- the overview -------------------------------------------------------------------------------


@router.get("/")
def overview(request: Request, viewer: Viewer = Depends(require_viewer)) -> Response:
    return _show(request, "overview.html", viewer, "overview", view=data.overview())


@router.get("/fragments/overview")
def overview_fragment(request: Request, viewer: Viewer = Depends(require_viewer)) -> Response:
    return _fragment(request, "_overview_live.html", final=False, view=data.overview())


@router.get("/lookup")
def lookup(id: str = "", viewer: Viewer = Depends(require_viewer)) -> Response:
    """The id box of every page: a job's page, else a batch's; a full id or the first 8 or more
    characters of one (the short ids the pages show)."""
    with _found():
        resolved = resolve_any(id.strip())
    if resolved is None:
        raise NotFoundPage(f"no job or batch with an id starting with {id.strip()!r}")
    kind, found = resolved
    return RedirectResponse(f"/dashboard/{kind}/{found}", status_code=303)


# --- batches ------------------------------------------------------------------------------------


@router.get("/batches")
def batches(
    request: Request, cursor: str | None = None, viewer: Viewer = Depends(require_viewer)
) -> Response:
    view = data.batch_list(data.decode_cursor(cursor))
    return _show(request, "batches.html", viewer, "batches", view=view)


def _gallery_page(
    status: str, code: str, after: int | None, before: int | None
) -> data.GalleryPage:
    if (problem := text_problem(code)) is not None:
        raise BadRequestPage("code", problem)
    statuses = (status,) if data.known_status(status) else ()
    where = q.GalleryFilter(statuses=statuses, error_code=code.strip() or None)
    return data.GalleryPage(where, after=after, before=before)


@router.get("/batches/{batch_id}")
def batch(
    request: Request,
    batch_id: str,
    status: str = "",
    code: str = "",
    after: Position = None,
    before: Position = None,
    viewer: Viewer = Depends(require_viewer),
) -> Response:
    at = _gallery_page(status, code, after, before)
    with _found():
        view = data.batch_page(resolve_batch_id(batch_id), at)
    return _show(
        request,
        "batch.html",
        viewer,
        "batches",
        view=view,
        status=at.where.statuses[0] if at.where.statuses else "",
        code=at.where.error_code or "",
    )


@router.get("/fragments/batches/{batch_id}")
def batch_fragment(
    request: Request, batch_id: str, viewer: Viewer = Depends(require_viewer)
) -> Response:
    with _found():
        view = data.batch_summary(parse_id(batch_id))
    return _fragment(request, "_batch_summary.html", final=view["batch"]["completed"], view=view)


@router.get("/batches/{batch_id}/manifest")
def manifest(batch_id: str, viewer: Viewer = Depends(require_viewer)) -> Response:
    """The batch manifest (JSONL) as a download, exactly as ``GET /v1/batches/{id}/manifest``."""
    found = parse_id(batch_id)
    with _found():
        response: StreamingResponse = batch_routes.get_manifest(found, viewer.principal)
    response.headers["Content-Disposition"] = f'attachment; filename="manifest-{found}.jsonl"'
    return secured(response)


# --- one job ------------------------------------------------------------------------------------


@router.get("/jobs/{job_id}")
def job(request: Request, job_id: str, viewer: Viewer = Depends(require_viewer)) -> Response:
    with _found():
        view = data.job_page(resolve_job_id(job_id))
    return _show(
        request, "job.html", viewer, "batches" if view["batch_id"] else "overview", job=view
    )


@router.get("/fragments/jobs/{job_id}")
def job_fragment(
    request: Request, job_id: str, viewer: Viewer = Depends(require_viewer)
) -> Response:
    with _found():
        view = data.job_page(parse_id(job_id))
    final = view["status"] in TERMINAL
    return _fragment(request, "_job_live.html", final=final, job=view, viewer=viewer)
