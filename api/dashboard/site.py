"""The web dashboard, served by the HTTP API's app under ``/dashboard``.

Server-rendered pages (Jinja2) with a little plain JavaScript for self-refresh and
confirmations; CSS and JS are served by the app itself (``/dashboard/static``), nothing is
fetched from elsewhere. ``install(app)`` adds the routes, the static files and the error pages.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api.dashboard import actions, auth, pages, thumbs
from api.dashboard.render import STATIC_DIR, page, secured


def install(app: FastAPI) -> None:
    """Serve the dashboard from ``app`` (``/`` leads to it)."""
    app.include_router(pages.router)
    app.include_router(actions.router)
    app.include_router(thumbs.router)
    app.mount("/dashboard/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")
    app.add_api_route("/", _home, include_in_schema=False)
    app.add_exception_handler(auth.LoginRequired, _login_required)
    app.add_exception_handler(auth.Forbidden, _forbidden)
    app.add_exception_handler(auth.MissingScope, _missing_scope)
    app.add_exception_handler(pages.NotFoundPage, _not_found)
    app.add_exception_handler(pages.BadRequestPage, _bad_request)


def _home() -> Response:
    return RedirectResponse("/dashboard/", status_code=307)


def _wants_page(request: Request) -> bool:
    """A person's navigation, not the page script's fetch of a fragment or an image."""
    return (
        request.method == "GET"
        and "/fragments/" not in request.url.path
        and "/thumbs/" not in request.url.path
        and request.headers.get("x-requested-with") != "fetch"
    )


def _login_required(request: Request, _: Exception) -> Response:
    if _wants_page(request):
        return secured(RedirectResponse(auth.login_url(request), status_code=303))
    return secured(Response("sign in first", status_code=401, media_type="text/plain"))


def _missing_scope(request: Request, exc: Exception) -> Response:
    return page(
        request,
        "error.html",
        {
            "title": "Refused",
            "message": f"{exc}: the dashboard shows and acts on every tenant's work.",
        },
        status_code=403,
    )


def _forbidden(request: Request, _: Exception) -> Response:
    return page(
        request,
        "error.html",
        {
            "title": "Refused",
            "message": "This form is out of date or came from another site. "
            "Go back, reload the page and try again.",
        },
        status_code=403,
    )


def _not_found(request: Request, exc: Exception) -> Response:
    return page(request, "error.html", {"title": "Not found", "message": str(exc)}, status_code=404)


def _bad_request(request: Request, exc: Exception) -> Response:
    return page(
        request, "error.html", {"title": "Not accepted", "message": str(exc)}, status_code=422
    )
