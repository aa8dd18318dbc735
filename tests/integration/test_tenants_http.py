"""Tenants' keys over real HTTP: scopes answered 403 naming the scope, another tenant's work
answered 404, who did what recorded, spend and budgets as the API shows them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.producers import AUTH, configure
from worker.service import jobs, keys, spend
from worker.store import fleet

pytestmark = pytest.mark.integration

REQUEST = {"prompt": "a lighthouse at dusk", "resolution": "2K"}


@pytest.fixture
def client(configured, monkeypatch: pytest.MonkeyPatch, api_url: str) -> Iterator[httpx.Client]:
    configure(monkeypatch)
    with httpx.Client(base_url=api_url, timeout=60) as http:
        yield http


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def a_key(tenant: str, scopes: str, **options: str) -> str:
    return str(keys.create(tenant=tenant, scopes=scopes, **options)["key"])


def test_a_read_only_key_cannot_enqueue_pause_or_see_another_tenants_jobs(
    client: httpx.Client,
) -> None:
    # Given tenant B's producer key with a job of B's, and tenant A's read-only key
    b_producer = a_key("tenant-b", "produce,read")
    a_reader = a_key("tenant-a", "read")
    created = client.post("/v1/jobs", json=REQUEST, headers=bearer(b_producer))
    assert created.status_code == 202, created.text
    b_job = created.json()
    assert (b_job["tenant"], b_job["key_id"]) == ("tenant-b", b_producer[4:18])

    # When A's reader enqueues, pauses, or reads B's job
    enqueue = client.post("/v1/jobs", json=REQUEST, headers=bearer(a_reader))
    pause = client.post("/v1/fleet/pause", json={"reason": "x"}, headers=bearer(a_reader))
    batch = client.post("/v1/batches", json=[REQUEST], headers=bearer(a_reader))
    read = client.get(f"/v1/jobs/{b_job['id']}", headers=bearer(a_reader))
    cancel = client.post(f"/v1/jobs/{b_job['id']}/cancel", headers=bearer(a_reader))

    # Then enqueue and pause are 403 naming the missing scope, B's job does not exist for A
    assert (enqueue.status_code, enqueue.json()["code"]) == (403, "forbidden")
    assert "'produce'" in enqueue.json()["message"]
    assert pause.status_code == 403 and "'operate'" in pause.json()["message"]
    assert batch.status_code == 403
    assert read.status_code == 404 and cancel.status_code == 403
    assert fleet.read_fleet_state().paused is False
    # while B reads its own job, and an operator every job
    assert client.get(f"/v1/jobs/{b_job['id']}", headers=bearer(b_producer)).status_code == 200
    operator = a_key("ops", "operate")
    assert client.get(f"/v1/jobs/{b_job['id']}", headers=bearer(operator)).status_code == 200


def test_pause_records_the_tenant_and_key(client: httpx.Client) -> None:
    operator = keys.create(tenant="ops", scopes="operate")
    paused = client.post(
        "/v1/fleet/pause", json={"reason": "provider incident"}, headers=bearer(operator["key"])
    )
    assert paused.status_code == 200
    assert paused.json()["paused_by"] == f"ops/{operator['id']}"
    client.post("/v1/fleet/resume", headers=bearer(operator["key"]))


def test_revoked_and_expired_keys_are_refused_and_counted(client: httpx.Client) -> None:
    created = keys.create(tenant="tenant-a", scopes="read")
    assert client.get("/v1/fleet", headers=bearer(created["key"])).status_code == 200
    keys.revoke(created["id"])
    assert client.get("/v1/fleet", headers=bearer(created["key"])).status_code == 401
    # a wrong secret behind a real id is refused too
    other = keys.create(tenant="tenant-a", scopes="read")["key"]
    assert client.get("/v1/fleet", headers=bearer(other[:-4] + "AAAA")).status_code == 401
    listed = {key["id"]: key for key in keys.list_keys()}
    assert listed[created["id"]]["active"] is False and "key" not in listed[created["id"]]


def test_env_tokens_are_admin_keys_of_the_default_tenant(client: httpx.Client) -> None:
    created = client.post("/v1/jobs", json=REQUEST, headers=AUTH)
    assert created.status_code == 202
    assert created.json()["tenant"] == "default" and created.json()["key_id"].startswith("env:")


def test_a_batch_records_its_tenant_and_max_spend(client: httpx.Client) -> None:
    producer = a_key("tenant-a", "produce,read")
    by_query = client.post(
        "/v1/batches?max_spend=0.05",
        content=b'{"prompt": "p1"}\n{"prompt": "p2"}\n',
        headers={**bearer(producer), "Content-Type": "application/x-ndjson"},
    )
    by_json = client.post(
        "/v1/batches", json={"jobs": [REQUEST], "max_spend": 1.5}, headers=bearer(producer)
    )
    assert by_query.status_code == 202 and by_json.status_code == 202, by_json.text
    assert (by_query.json()["tenant"], by_query.json()["max_spend"]) == ("tenant-a", 0.05)
    assert by_json.json()["max_spend"] == 1.5
    assert by_json.json()["spend"]["charged"] == {"amount": 0.0, "count": 0}
    refused = client.post("/v1/batches?max_spend=-1", json=[REQUEST], headers=bearer(producer))
    assert refused.status_code == 422
    # another tenant's batch does not exist for this key
    other = a_key("tenant-b", "read")
    assert (
        client.get(f"/v1/batches/{by_json.json()['id']}", headers=bearer(other)).status_code == 404
    )


def test_a_job_over_budget_says_it_waits(client: httpx.Client) -> None:
    producer = a_key("tenant-a", "produce,read")
    spend.set_budget(tenant="tenant-a", daily=0.01)  # a 2K job costs 0.03
    job = client.post("/v1/jobs", json=REQUEST, headers=bearer(producer)).json()
    read = client.get(f"/v1/jobs/{job['id']}", headers=bearer(producer)).json()
    assert (read["status"], read["waiting"]) == ("queued", "budget")
    assert jobs.status(jobs.parse_job_id(job["id"]))["waiting"] == "budget"
    spend.set_budget(tenant="tenant-a", daily=1.0)
    assert client.get(f"/v1/jobs/{job['id']}", headers=bearer(producer)).json()["waiting"] is None


def test_spend_is_scoped_to_the_tenant(client: httpx.Client) -> None:
    reader = a_key("tenant-a", "read")
    own = client.get("/v1/spend", headers=bearer(reader))
    assert own.status_code == 200
    body = own.json()
    assert (
        body["charged"] == {"amount": 0.0, "count": 0} and body["filters"]["tenant"] == "tenant-a"
    )
    other = client.get("/v1/spend", params={"tenant": "tenant-b"}, headers=bearer(reader))
    assert other.status_code == 403
    everyone = client.get("/v1/spend", params={"since": "2026-01-01T00:00:00Z"}, headers=AUTH)
    assert everyone.status_code == 200 and everyone.json()["filters"]["tenant"] is None
    # `since` as the CLI takes it: a duration back, or an ISO time; anything else names the rule
    week = client.get("/v1/spend", params={"since": "7d"}, headers=AUTH)
    assert week.status_code == 200, week.text
    bad = client.get("/v1/spend", params={"since": "last week"}, headers=AUTH)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "since"


def test_the_dashboard_needs_the_operate_scope_and_shows_spend(client: httpx.Client) -> None:
    reader = a_key("tenant-a", "read,produce")
    operator = a_key("ops", "operate")
    refused = client.get("/dashboard/", headers=bearer(reader))
    assert refused.status_code == 403 and "lacks the &#39;operate&#39; scope" in refused.text
    assert client.post("/dashboard/fleet/pause", headers=bearer(reader)).status_code == 403
    shown = client.get("/dashboard/", headers=bearer(operator))
    assert shown.status_code == 200 and "Spend today" in shown.text
    batch = client.post("/v1/batches?max_spend=0.5", json=[REQUEST], headers=bearer(reader)).json()
    page = client.get(f"/dashboard/batches/{batch['id']}", headers=bearer(operator))
    assert page.status_code == 200 and "of at most 0.50" in page.text and "tenant-a" in page.text


def test_a_dashboard_session_of_a_revoked_key_ends(client: httpx.Client) -> None:
    created = keys.create(tenant="ops", scopes="operate")
    signed = client.post("/dashboard/login", data={"token": created["key"], "next": "/dashboard/"})
    assert signed.status_code == 303
    cookie = signed.cookies.get("imagegen_session")
    assert cookie
    client.cookies.set("imagegen_session", cookie, path="/dashboard")
    assert client.get("/dashboard/").status_code == 200
    keys.revoke(created["id"])
    again = client.get("/dashboard/", follow_redirects=False)
    assert again.status_code in (303, 307) and "/dashboard/login" in again.headers["location"]


def test_wrong_tenant_keys_are_throttled_like_wrong_tokens(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, IMAGEGEN_AUTH_MAX_FAILURES="2")
    real = a_key("tenant-a", "read")
    wrong = real[:-6] + "ZZZZZZ"
    answers = [client.get("/v1/fleet", headers=bearer(wrong)).status_code for _ in range(3)]
    assert answers == [401, 401, 429]
    # a valid key is never slowed, even from that address
    assert client.get("/v1/fleet", headers=bearer(real)).status_code == 200
    assert "/v1/spend" in client.get("/openapi.json").json()["paths"]


def test_lists_short_ids_and_batch_actions_stay_within_the_keys_tenant(
    client: httpx.Client,
) -> None:
    # Given a job and a batch of tenant B, and tenant A's producer key
    b_producer, a_producer = a_key("tenant-b", "produce,read"), a_key("tenant-a", "produce,read")
    b_job = client.post("/v1/jobs", json=REQUEST, headers=bearer(b_producer)).json()
    b_batch = client.post("/v1/batches", json=[REQUEST], headers=bearer(b_producer)).json()
    a_job = client.post("/v1/jobs", json=REQUEST, headers=bearer(a_producer)).json()

    # When A lists jobs and batches, and names B's job and batch by full id or short prefix
    a_jobs = client.get("/v1/jobs", headers=bearer(a_producer)).json()["items"]
    a_batches = client.get("/v1/batches", headers=bearer(a_producer)).json()["items"]
    by_prefix = client.get(f"/v1/jobs/{b_job['id'][:8]}", headers=bearer(a_producer))
    retry = client.post(f"/v1/jobs/{b_job['id']}/retry", headers=bearer(a_producer))
    cancel = client.post(f"/v1/batches/{b_batch['id'][:8]}/cancel", headers=bearer(a_producer))
    manifest = client.get(f"/v1/batches/{b_batch['id']}/manifest", headers=bearer(a_producer))
    deliveries = client.get("/v1/webhooks/deliveries", headers=bearer(a_producer))

    # Then A sees only its own work: B's ids are not found, never listed, never candidates
    assert [job["id"] for job in a_jobs] == [a_job["id"]]
    assert a_batches == []
    assert by_prefix.status_code == 404 and b_job["id"] not in by_prefix.text
    assert retry.status_code == 404 and cancel.status_code == 404
    assert manifest.status_code == 404
    # deliveries hold every tenant's callbacks: an operator's view
    assert deliveries.status_code == 403 and "'operate'" in deliveries.json()["message"]
    # while B cancels its own batch, and an operator lists everyone's jobs
    own = client.post(f"/v1/batches/{b_batch['id'][:8]}/cancel", headers=bearer(b_producer))
    assert own.status_code == 200 and own.json()["jobs"] == 1
    operator = a_key("ops", "operate")
    listed = client.get("/v1/jobs", headers=bearer(operator)).json()["items"]
    assert {b_job["id"], a_job["id"]} <= {job["id"] for job in listed}
