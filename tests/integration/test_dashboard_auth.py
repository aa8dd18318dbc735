"""The dashboard's sign-in, session cookie, CSRF protection and actions, over real HTTP (the
app in uvicorn) against real Postgres, Redis and S3; and the ``/v1/fleet`` endpoints."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from models import AuthFailure, RevokedSession
from tests.dashboard import csrf_of, finish, sign_in
from tests.harness import free_port, start_imagegen, stop_process, wait_http
from tests.producers import AUTH, PRODUCER_ENV, TOKEN, configure, running_api
from worker.db.engine import session_scope
from worker.service import batches, jobs
from worker.store.fleet import read_fleet_state

pytestmark = pytest.mark.integration


@pytest.fixture
def browser(configured, monkeypatch: pytest.MonkeyPatch, api_url: str) -> Iterator[httpx.Client]:
    """A client that keeps cookies, like a browser (not signed in yet)."""
    configure(monkeypatch)
    with httpx.Client(base_url=api_url, timeout=30) as client:
        yield client


@pytest.fixture
def signed_in(browser: httpx.Client) -> httpx.Client:
    assert sign_in(browser).status_code == 303
    return browser


def _queued_job() -> uuid.UUID:
    return jobs.enqueue({"prompt": "a quiet harbour"}, dispatch=False)


# --- signing in ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/",
        "/dashboard/batches",
        f"/dashboard/jobs/{uuid.uuid4()}",
        f"/dashboard/batches/{uuid.uuid4()}?status=failed",
    ],
)
def test_pages_send_a_signed_out_person_to_the_sign_in_page(
    browser: httpx.Client, path: str
) -> None:
    reply = browser.get(path, follow_redirects=False)
    assert reply.status_code == 303
    assert reply.headers["location"].startswith("/dashboard/login?next=%2Fdashboard%2F")
    page = browser.get(reply.headers["location"])
    assert page.status_code == 200 and 'name="token"' in page.text
    assert "IMAGEGEN_API_TOKENS" in page.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/dashboard/fragments/overview"),
        ("GET", f"/dashboard/thumbs/{uuid.uuid4()}/0"),
        ("POST", f"/dashboard/jobs/{uuid.uuid4()}/cancel"),
        ("POST", "/dashboard/fleet/pause"),
    ],
)
def test_fragments_images_and_actions_answer_401_when_signed_out(
    browser: httpx.Client, method: str, path: str
) -> None:
    assert browser.request(method, path, follow_redirects=False).status_code == 401


def test_root_leads_to_the_dashboard(browser: httpx.Client) -> None:
    reply = browser.get("/", follow_redirects=False)
    assert reply.status_code == 307 and reply.headers["location"] == "/dashboard/"


def test_sign_in_sets_a_strict_http_only_cookie_without_the_token(browser: httpx.Client) -> None:
    wrong = sign_in(browser, token="not-a-token")
    assert wrong.status_code == 401 and "not valid" in wrong.text
    assert "set-cookie" not in wrong.headers and "not-a-token" not in wrong.text
    reply = sign_in(browser, next_page="/dashboard/batches")
    assert reply.status_code == 303 and reply.headers["location"] == "/dashboard/batches"
    header = reply.headers["set-cookie"]
    cookie = SimpleCookie(header)["imagegen_session"]
    assert cookie["httponly"] and cookie["samesite"] == "strict"
    assert cookie["path"] == "/dashboard" and int(cookie["max-age"]) > 0
    assert TOKEN not in header and TOKEN not in cookie.value
    assert browser.get("/dashboard/batches").status_code == 200


def test_sign_in_only_goes_back_to_dashboard_pages(browser: httpx.Client) -> None:
    for target in ["https://evil.example.com/", "//evil.example.com/x", "/v1/jobs", "/\\evil"]:
        reply = sign_in(browser, next_page=target)
        assert reply.headers["location"] == "/dashboard/", target


def test_sign_out_needs_the_csrf_token_then_ends_the_session(signed_in: httpx.Client) -> None:
    page = signed_in.get("/dashboard/")
    assert signed_in.post("/dashboard/logout", data={}).status_code == 403
    reply = signed_in.post(
        "/dashboard/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False
    )
    assert reply.status_code == 303 and reply.headers["location"] == "/dashboard/login"
    assert 'imagegen_session=""' in reply.headers["set-cookie"]
    assert signed_in.get("/dashboard/", follow_redirects=False).status_code == 303


def test_a_tampered_cookie_or_changed_tokens_end_the_session(
    signed_in: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = signed_in.cookies["imagegen_session"]
    signed_in.cookies.set(
        "imagegen_session", value[:-2] + ("AA" if value[-2:] != "AA" else "BB"), path="/dashboard"
    )
    assert signed_in.get("/dashboard/", follow_redirects=False).status_code == 303
    signed_in.cookies.set("imagegen_session", value, path="/dashboard")
    assert signed_in.get("/dashboard/").status_code == 200
    configure(monkeypatch, IMAGEGEN_API_TOKENS=TOKEN)  # a token was revoked
    assert signed_in.get("/dashboard/", follow_redirects=False).status_code == 303


def test_a_bearer_token_works_without_cookie_or_csrf(browser: httpx.Client) -> None:
    assert browser.get("/dashboard/", headers=AUTH).status_code == 200
    reply = browser.post(
        "/dashboard/fleet/pause",
        headers=AUTH,
        follow_redirects=False,
        data={"reason": "scripted", "confirmed": "yes"},
    )
    assert reply.status_code == 303 and read_fleet_state().paused is True
    wrong = {"Authorization": "Bearer nope"}
    assert browser.get("/dashboard/", headers=wrong, follow_redirects=False).status_code == 303


# --- actions ------------------------------------------------------------------------------------


def test_actions_refuse_missing_wrong_or_cross_site_csrf(signed_in: httpx.Client) -> None:
    job_id = _queued_job()
    csrf = csrf_of(signed_in.get(f"/dashboard/jobs/{job_id}").text)
    path = f"/dashboard/jobs/{job_id}/cancel"
    assert signed_in.post(path, data={"confirmed": "yes"}).status_code == 403
    assert signed_in.post(path, data={"confirmed": "yes", "csrf": csrf + "x"}).status_code == 403
    assert signed_in.post(path, json={"confirmed": "yes", "csrf": csrf}).status_code == 403
    cross = signed_in.post(
        path,
        data={"confirmed": "yes", "csrf": csrf},
        headers={"Origin": "https://evil.example.com"},
    )
    assert cross.status_code == 403
    assert jobs.status(job_id)["status"] == "queued"


def test_cancel_asks_for_confirmation_then_cancels_like_the_cli(signed_in: httpx.Client) -> None:
    job_id = _queued_job()
    csrf = csrf_of(signed_in.get(f"/dashboard/jobs/{job_id}").text)
    path = f"/dashboard/jobs/{job_id}/cancel"
    asked = signed_in.post(path, data={"csrf": csrf})
    assert asked.status_code == 200 and "Cancel this job?" in asked.text
    assert 'name="confirmed" value="yes"' in asked.text
    assert jobs.status(job_id)["status"] == "queued"
    done = signed_in.post(path, data={"csrf": csrf, "confirmed": "yes"}, follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"] == f"/dashboard/jobs/{job_id}?notice=cancelled"
    view = jobs.status(job_id)
    assert view["status"] == "cancelled" and view["error_code"] == "cancelled"
    page = signed_in.get(done.headers["location"])
    assert "The job was cancelled." in page.text and "/cancel" not in page.text


def test_retry_sends_a_failed_job_back_to_the_queue(signed_in: httpx.Client) -> None:
    job_id = _queued_job()
    finish(job_id, "failed", error_code="provider_failed")
    page = signed_in.get(f"/dashboard/jobs/{job_id}")
    assert f"/dashboard/jobs/{job_id}/retry" in page.text
    reply = signed_in.post(
        f"/dashboard/jobs/{job_id}/retry",
        follow_redirects=False,
        data={"csrf": csrf_of(page.text), "confirmed": "yes"},
    )
    assert reply.headers["location"].endswith("?notice=retried")
    view = jobs.status(job_id)
    assert view["status"] == "queued" and view["error_code"] is None
    assert view["events"][-1]["event"] == "retried"
    again = signed_in.post(
        f"/dashboard/jobs/{job_id}/retry",
        follow_redirects=False,
        data={"csrf": csrf_of(page.text), "confirmed": "yes"},
    )
    assert again.headers["location"].endswith("?notice=not_retryable")


def test_pause_and_resume_from_the_overview(signed_in: httpx.Client) -> None:
    csrf = csrf_of(signed_in.get("/dashboard/").text)
    asked = signed_in.post("/dashboard/fleet/pause", data={"csrf": csrf, "reason": "maintenance"})
    assert "Pause submissions?" in asked.text and read_fleet_state().paused is False
    signed_in.post(
        "/dashboard/fleet/pause",
        data={"csrf": csrf, "reason": "  provider  maintenance ", "confirmed": "yes"},
    )
    state = read_fleet_state()
    assert (state.paused, state.reason, state.paused_by) == (
        True,
        "provider maintenance",
        "dashboard:default/env",  # signed in with an IMAGEGEN_API_TOKENS token
    )
    page = signed_in.get("/dashboard/")
    assert 'data-fleet-paused="yes"' in page.text and "provider maintenance" in page.text
    assert "/dashboard/fleet/resume" in page.text
    signed_in.post("/dashboard/fleet/resume", data={"csrf": csrf, "confirmed": "yes"})
    assert read_fleet_state().paused is False
    assert 'data-fleet-paused="no"' in signed_in.get("/dashboard/").text


# --- the fleet over /v1 -------------------------------------------------------------------------


def test_fleet_endpoints_read_pause_and_resume(browser: httpx.Client) -> None:
    assert browser.get("/v1/fleet").status_code == 401
    assert browser.post("/v1/fleet/pause", json={"reason": "x"}).status_code == 401
    state = browser.get("/v1/fleet", headers=AUTH).json()
    assert state["paused"] is False and state["breaker"] == "closed"
    paused = browser.post("/v1/fleet/pause", headers=AUTH, json={"reason": "balance check"})
    assert paused.status_code == 200
    assert paused.json()["paused"] is True and paused.json()["reason"] == "balance check"
    # the tenant and key that paused (an IMAGEGEN_API_TOKENS token: the default tenant)
    assert paused.json()["paused_by"].startswith("default/env:")
    bad = browser.post("/v1/fleet/pause", headers=AUTH, json={"reason": ""})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "reason"
    resumed = browser.post("/v1/fleet/resume", headers=AUTH)
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    paths = browser.get("/openapi.json").json()["paths"]
    assert {"/v1/fleet", "/v1/fleet/pause", "/v1/fleet/resume"} <= set(paths)
    assert not any(path.startswith("/dashboard") for path in paths)


# --- secrets ------------------------------------------------------------------------------------


def test_the_api_token_never_appears_in_a_page_or_a_header(signed_in: httpx.Client) -> None:
    job_id = _queued_job()
    receipt = batches.enqueue_batch(
        [{"prompt": "one"}, {"prompt": "two"}], name="night", dispatch=False
    )
    finish(receipt.job_ids[0], "failed", error_code="content_policy")
    paths = [
        "/dashboard/",
        "/dashboard/fragments/overview",
        "/dashboard/batches",
        f"/dashboard/batches/{receipt.batch_id}",
        f"/dashboard/jobs/{job_id}",
        f"/dashboard/jobs/{receipt.job_ids[0]}",
        f"/dashboard/batches/{receipt.batch_id}/manifest",
        "/dashboard/login",
        f"/dashboard/fragments/jobs/{job_id}",
    ]
    for path in paths:
        reply = signed_in.get(path, follow_redirects=True)
        assert reply.status_code == 200, path
        assert TOKEN not in reply.text and TOKEN not in str(reply.headers), path
    assert TOKEN not in str(signed_in.cookies.jar)


def test_a_nul_in_the_pause_reason_is_refused_and_nothing_is_paused(
    signed_in: httpx.Client,
) -> None:
    csrf = csrf_of(signed_in.get("/dashboard/").text)
    form = {"csrf": csrf, "reason": "maintenance\x00window", "confirmed": "yes"}
    reply = signed_in.post("/dashboard/fleet/pause", data=form, follow_redirects=False)
    assert reply.status_code == 422
    assert "reason: must not contain NUL characters" in reply.text
    assert read_fleet_state().paused is False


# --- sessions end on sign-out, everywhere --------------------------------------------------------


def test_signing_out_revokes_the_session_on_every_api_process(
    signed_in: httpx.Client, api_url: str
) -> None:
    # Given a signed-in browser whose cookie someone copied
    copied = signed_in.cookies["imagegen_session"]
    assert signed_in.get("/dashboard/").status_code == 200
    # When the person signs out
    csrf = csrf_of(signed_in.get("/dashboard/").text)
    assert signed_in.post("/dashboard/logout", data={"csrf": csrf}).status_code == 303
    # Then the copied cookie is refused by this API process and by another one started later
    with running_api() as other_url:
        for url in (api_url, other_url):
            with httpx.Client(base_url=url, cookies={"imagegen_session": copied}) as replay:
                assert replay.get("/dashboard/", follow_redirects=False).status_code == 303
                assert replay.get("/dashboard/fragments/overview").status_code == 401
                forged = {"csrf": csrf, "reason": "x", "confirmed": "yes"}
                assert replay.post("/dashboard/fleet/pause", data=forged).status_code == 401
    assert read_fleet_state().paused is False


def test_other_sessions_live_on_and_expired_revocations_are_pruned(
    browser: httpx.Client, api_url: str
) -> None:
    # Given a revocation whose session would have expired already, and two signed-in browsers
    with session_scope() as session:
        session.add(RevokedSession(session_id="old", expires_at=datetime.now(UTC) - timedelta(1)))
    with httpx.Client(base_url=api_url) as second:
        assert sign_in(browser).status_code == 303 and sign_in(second).status_code == 303
        # When the first one signs out
        csrf = csrf_of(browser.get("/dashboard/").text)
        browser.post("/dashboard/logout", data={"csrf": csrf})
        # Then the second one is still signed in, and only the new revocation is kept
        assert second.get("/dashboard/").status_code == 200
    assert browser.get("/dashboard/", follow_redirects=False).status_code == 303
    with session_scope() as session:
        kept = session.scalars(select(RevokedSession)).all()
    assert len(kept) == 1 and kept[0].session_id != "old"
    assert kept[0].expires_at > datetime.now(UTC) + timedelta(hours=11)


# --- failed authentications are limited per address -------------------------------------------


LIMITED = {"IMAGEGEN_AUTH_MAX_FAILURES": "3", "IMAGEGEN_AUTH_FAILURE_WINDOW_S": "2"}


def _refused(reply: httpx.Response) -> tuple[int, str | None]:
    return reply.status_code, reply.headers.get("retry-after")


def test_failed_bearer_tokens_are_answered_429_past_the_limit_and_valid_ones_never(
    browser: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, **LIMITED)
    wrong = {"Authorization": "Bearer " + "w" * 40}
    # Given three wrong tokens from this address (on /v1 and on the dashboard)
    assert browser.post("/v1/jobs", headers=wrong, json={"prompt": "x"}).status_code == 401
    assert browser.get("/v1/fleet", headers=wrong).status_code == 401
    assert browser.get("/dashboard/", headers=wrong, follow_redirects=False).status_code == 303
    # When a fourth comes within the window, it is refused 429 with Retry-After, everywhere
    status, retry_after = _refused(browser.get("/v1/fleet", headers=wrong))
    assert status == 429 and retry_after is not None and 1 <= int(retry_after) <= 2
    assert browser.get("/v1/fleet", headers=wrong).json()["code"] == "too_many_attempts"
    assert browser.get("/dashboard/", headers=wrong).status_code == 429
    # Then a valid token from the same address goes through, at once
    assert browser.get("/v1/fleet", headers=AUTH).status_code == 200
    assert browser.get("/dashboard/", headers=AUTH).status_code == 200
    # And once the window is over, a wrong token is a plain 401 again
    time.sleep(2.1)
    assert browser.get("/v1/fleet", headers=wrong).status_code == 401


def test_calls_without_credentials_are_not_counted(
    browser: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, **LIMITED)
    for _ in range(6):
        assert browser.get("/v1/fleet").status_code == 401
        assert browser.post("/dashboard/login", data={"token": " "}).status_code == 401
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(AuthFailure)) == 0


def test_failed_sign_ins_are_limited_across_api_processes(
    browser: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    service_env: dict[str, str],
    tmp_path: Path,
) -> None:
    limited = {**LIMITED, "IMAGEGEN_AUTH_FAILURE_WINDOW_S": "60"}
    configure(monkeypatch, **limited)
    port = free_port()
    other = start_imagegen(
        {**service_env, **PRODUCER_ENV, **limited},
        tmp_path / "api.log",
        "api",
        "--port",
        str(port),
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        # Given two wrong sign-ins on this API process and one on another (`imagegen api`)
        assert sign_in(browser, token="x" * 40).status_code == 401
        assert sign_in(browser, token="y" * 40).status_code == 401
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as second:
            assert sign_in(second, token="z" * 40).status_code == 401
            # When a fourth wrong one comes, to the other process
            refused = sign_in(second, token="v" * 40)
            # Then it is answered 429 with Retry-After, and the page says why
            assert refused.status_code == 429 and 55 <= int(refused.headers["retry-after"]) <= 60
            assert "Too many failed sign-ins" in refused.text
            # And the right token still signs in on both processes
            assert sign_in(second).status_code == 303
        assert sign_in(browser).status_code == 303
    finally:
        stop_process(other)
