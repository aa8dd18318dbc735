"""The dashboard's actions (POST): sign in and out, cancel or retry a job, cancel a batch,
pause or resume.

Each action calls the function the CLI calls (``imagegen cancel`` -> ``service.jobs.cancel``,
``imagegen retry`` -> ``service.operator.retry_job``, ``imagegen batch cancel`` ->
``service.batch_control.cancel_batch``, pause and resume -> ``service.operator``),
after a confirmation: the page's script asks first (``confirm()``) and marks the form; without the
script the server answers a confirmation page instead of acting. Forms need the session's CSRF
token; every action answers a redirect (303) back to the page, with a fixed notice.
"""

from __future__ import annotations

import logging
import math
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from api.auth import client_address
from api.dashboard.auth import (
    COOKIE,
    COOKIE_PATH,
    MAX_AGE_S,
    Forbidden,
    Viewer,
    check_form,
    new_session,
    principal_of,
    require_viewer,
    safe_next,
)
from api.dashboard.pages import BadRequestPage, NotFoundPage, parse_id
from api.dashboard.render import page, secured
from worker.core.errors import BatchNotFound
from worker.core.untrusted import text_problem
from worker.service import batch_control, jobs
from worker.service import operator as admin
from worker.service.access import end_session, failed_attempt

log = logging.getLogger("imagegen.dashboard")
router = APIRouter(prefix="/dashboard", include_in_schema=False)
FORM_TYPE = "application/x-www-form-urlencoded"


async def posted_form(request: Request) -> dict[str, str]:
    """The fields of an HTML form (URL-encoded; the last value of a repeated name wins)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM_TYPE:
        return {}
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[-1] for name, values in fields.items()}


def _back(path: str, notice: str) -> Response:
    return secured(RedirectResponse(f"{path}?notice={notice}", status_code=303))


def _confirmed(
    request: Request, viewer: Viewer, form: dict[str, str], question: dict[str, Any]
) -> Response | None:
    """None when the form is confirmed; else the confirmation page to answer instead."""
    check_form(request, viewer, form)
    if form.get("confirmed") == "yes":
        return None
    return page(
        request,
        "confirm.html",
        {
            "viewer": viewer,
            "nav": "",
            "notice": None,
            "action": request.url.path,
            "form": form,
            **question,
        },
    )


# --- sign in and out ----------------------------------------------------------------------------


@router.post("/login")
def login(request: Request, form: dict[str, str] = Depends(posted_form)) -> Response:
    """Check the pasted API token; on success, set the session cookie and go on."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden()
    target = safe_next(form.get("next"))
    token = form.get("token", "")
    principal = principal_of(token)
    if principal is None:
        return _refused_sign_in(request, target, counted=bool(token.strip()))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        new_session(principal),
        max_age=MAX_AGE_S,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    log.info("dashboard_login")
    return secured(response)


def _refused_sign_in(request: Request, target: str, *, counted: bool) -> Response:
    """The sign-in page again: 401, or 429 once this address has failed too often."""
    client = client_address(request)
    log.warning("dashboard_login_refused", extra={"client": client})
    retry_after_s = failed_attempt(client) if counted else None
    if retry_after_s is None:
        error, status, headers = "That token is not valid.", 401, {}
    else:
        wait = math.ceil(retry_after_s)
        error = f"Too many failed sign-ins from your address. Try again in {wait} seconds."
        status, headers = 429, {"Retry-After": str(wait)}
    response = page(request, "login.html", {"next": target, "error": error}, status_code=status)
    response.headers.update(headers)
    return response


@router.post("/logout")
def logout(
    request: Request,
    viewer: Viewer = Depends(require_viewer),
    form: dict[str, str] = Depends(posted_form),
) -> Response:
    check_form(request, viewer, form)
    if viewer.session_id is not None and viewer.expires_at is not None:
        end_session(viewer.session_id, expires_at=viewer.expires_at)  # on every API process
    response = RedirectResponse(f"{COOKIE_PATH}/login", status_code=303)
    response.delete_cookie(
        COOKIE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return secured(response)


# --- jobs ---------------------------------------------------------------------------------------


@router.post("/jobs/{job_id}/cancel")
def cancel(
    request: Request,
    job_id: str,
    viewer: Viewer = Depends(require_viewer),
    form: dict[str, str] = Depends(posted_form),
) -> Response:
    """``imagegen cancel``: an active job stops at its next step; an ended one stays."""
    found = parse_id(job_id)
    asked = _confirmed(
        request,
        viewer,
        form,
        {
            "title": "Cancel this job?",
            "button": "Cancel the job",
            "back": f"/dashboard/jobs/{found}",
            "question": f"Job {found} will stop at its next step; its outputs are not copied.",
        },
    )
    if asked is not None:
        return asked
    status = jobs.cancel(found, reason=f"cancelled by dashboard:{viewer.principal.label}")
    log.info("dashboard_cancel", extra={"job_id": str(found), "status": status})
    return _back(
        f"/dashboard/jobs/{found}", "cancelled" if status == "cancelled" else "not_cancelled"
    )


@router.post("/jobs/{job_id}/retry")
def retry(
    request: Request,
    job_id: str,
    viewer: Viewer = Depends(require_viewer),
    form: dict[str, str] = Depends(posted_form),
) -> Response:
    """``imagegen retry JOB_ID``: a failed job goes back to the queue (a new paid prediction)."""
    found = parse_id(job_id)
    asked = _confirmed(
        request,
        viewer,
        form,
        {
            "title": "Retry this job?",
            "button": "Retry the job",
            "back": f"/dashboard/jobs/{found}",
            "question": f"Job {found} goes back to the queue with fresh counters. "
            "Retrying creates a new paid prediction.",
        },
    )
    if asked is not None:
        return asked
    try:
        admin.retry_job(found)
    except admin.NotRetryable:
        return _back(f"/dashboard/jobs/{found}", "not_retryable")
    log.info("dashboard_retry", extra={"job_id": str(found)})
    return _back(f"/dashboard/jobs/{found}", "retried")


# --- batches ------------------------------------------------------------------------------------


@router.post("/batches/{batch_id}/cancel")
def cancel_batch(
    request: Request,
    batch_id: str,
    viewer: Viewer = Depends(require_viewer),
    form: dict[str, str] = Depends(posted_form),
) -> Response:
    """``imagegen batch cancel``: queued jobs are cancelled at once, those at the provider at
    their next step; ended jobs stay as they are."""
    found = parse_id(batch_id)
    asked = _confirmed(
        request,
        viewer,
        form,
        {
            "title": "Cancel this batch?",
            "button": "Cancel the batch",
            "back": f"/dashboard/batches/{found}",
            "question": f"Every job of batch {found} that has not ended is cancelled: queued "
            "ones at once, those at the provider at their next step.",
        },
    )
    if asked is not None:
        return asked
    try:
        done = batch_control.cancel_batch(found)
    except BatchNotFound:
        raise NotFoundPage(f"no batch with id {found}") from None
    log.info("dashboard_batch_cancel", extra={"batch_id": str(found), "jobs": done.jobs})
    notice = "batch_cancelled" if done.jobs else "batch_not_cancelled"
    return _back(f"/dashboard/batches/{found}", notice)


# --- the fleet ----------------------------------------------------------------------------------


@router.post("/fleet/pause")
def pause(
    request: Request,
    viewer: Viewer = Depends(require_viewer),
    form: dict[str, str] = Depends(posted_form),
) -> Response:
    """``imagegen pause``: no new submissions fleet-wide until resumed."""
    reason = " ".join(form.get("reason", "").split())[: admin.MAX_REASON_CHARS]
    reason = reason or "paused by an operator"
    check_form(request, viewer, form)
    if (problem := text_problem(reason)) is not None:
        raise BadRequestPage("reason", problem)
    asked = _confirmed(
        request,
        viewer,
        {**form, "reason": reason},
        {
            "title": "Pause submissions?",
            "button": "Pause submissions",
            "back": "/dashboard/",
            "question": "No job is submitted to the provider until submissions are resumed; "
            "running predictions are still polled and copied.",
        },
    )
    if asked is not None:
        return asked
    admin.pause(reason, by=f"dashboard:{viewer.principal.label}")
    return _back("/dashboard/", "paused")


@router.post("/fleet/resume")
def resume(
    request: Request,
    viewer: Viewer = Depends(require_viewer),
    form: dict[str, str] = Depends(posted_form),
) -> Response:
    """``imagegen resume``: submissions go again (and a cool-down is forgotten)."""
    asked = _confirmed(
        request,
        viewer,
        form,
        {
            "title": "Resume submissions?",
            "button": "Resume submissions",
            "back": "/dashboard/",
            "question": "Queued jobs are submitted to the provider again, at the fleet's rate.",
        },
    )
    if asked is not None:
        return asked
    admin.resume(by=f"dashboard:{viewer.principal.label}")
    return _back("/dashboard/", "resumed")
