"""Issue 14 on the HTTP API, over real HTTP against real Postgres: metadata, listings with
keyset pagination and filters, short ids, cancelling and retrying batches and jobs, the fleet
pause without a body."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from models import Batch
from models.base import utcnow
from tests.integration.test_admin import failed_job, sql
from tests.producers import AUTH, configure, row_counts
from worker.core.states import JobStatus
from worker.db.engine import session_scope
from worker.store import batches as batch_store
from worker.store import steps
from worker.store.batches import NewJob

pytestmark = pytest.mark.integration


@pytest.fixture
def api(configured, monkeypatch: pytest.MonkeyPatch, api_url: str) -> Iterator[httpx.Client]:
    configure(monkeypatch)
    with httpx.Client(base_url=api_url, headers=AUTH, timeout=60) as client:
        yield client


def a_batch_of(api: httpx.Client, count: int, **envelope: object) -> dict:
    jobs = [{"prompt": f"item {i}", "ref": f"r{i}"} for i in range(count)]
    reply = api.post("/v1/batches", json={"jobs": jobs, **envelope})
    assert reply.status_code == 202, reply.text
    return reply.json()


def running(job_id: uuid.UUID) -> None:
    with session_scope() as session:
        claim = steps.claim_for_submit(session, job_id=job_id, lease_s=60)
        assert claim is not None
        steps.mark_running(
            session,
            claim=claim,
            prediction_id="p",
            provider_status="created",
            next_poll_at=utcnow(),
        )


# --- the fleet ----------------------------------------------------------------------------------


def test_pause_without_a_body_then_resume(api: httpx.Client) -> None:
    paused = api.post("/v1/fleet/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True and paused.json()["reason"]
    assert api.post("/v1/fleet/resume").json()["paused"] is False
    with_reason = api.post("/v1/fleet/pause", json={"reason": "maintenance"})
    assert with_reason.json()["reason"] == "maintenance"
    assert api.post("/v1/fleet/pause", json={"reason": ""}).status_code == 422
    api.post("/v1/fleet/resume")


# --- metadata -----------------------------------------------------------------------------------


def test_job_metadata_is_stored_echoed_and_filterable(api: httpx.Client) -> None:
    tag = uuid.uuid4().hex
    meta = {"tag": tag, "order": 1234, "vip": True, "nested": {"a": [1, "b"]}}
    created = api.post("/v1/jobs", json={"prompt": "a fox", "metadata": meta})
    assert created.status_code == 202, created.text
    job = created.json()
    assert job["metadata"] == meta
    assert api.get(f"/v1/jobs/{job['id']}").json()["metadata"] == meta
    api.post("/v1/jobs", json={"prompt": "another", "metadata": {"tag": tag, "order": 99}})
    # text or the number it spells both match; several filters must all hold
    for query in (
        f"metadata.tag={tag}&metadata.order=1234",
        f"metadata.tag={tag}&metadata.vip=true",
    ):
        items = api.get(f"/v1/jobs?{query}").json()["items"]
        assert [item["id"] for item in items] == [job["id"]], query
    assert len(api.get(f"/v1/jobs?metadata.tag={tag}").json()["items"]) == 2
    assert api.get(f"/v1/jobs?metadata.tag={tag}&metadata.order=5").json()["items"] == []


@pytest.mark.parametrize(
    ("metadata", "rule"),
    [
        ("not an object", "Input should be a valid dictionary"),
        ({"bad key!": 1}, "keys must be 1 to 64 letters, digits or _ . : -"),
        ({"k": "x" * 5000}, "must be at most 4096 bytes as JSON"),
        ({"k": "nul\u0000"}, "texts must not contain NUL characters"),
        ({"k": {"a": {"b": {"c": {"d": 1}}}}}, "must not nest deeper than 4 levels"),
    ],
)
def test_bad_metadata_names_the_field_and_rule_and_writes_nothing(
    api: httpx.Client, metadata: object, rule: str
) -> None:
    before = row_counts()
    reply = api.post("/v1/jobs", json={"prompt": "x", "metadata": metadata})
    assert reply.status_code == 422, reply.text
    problem = reply.json()["errors"][0]
    assert problem["field"] == "metadata" and rule in problem["rule"], problem
    batch = api.post("/v1/batches", json={"jobs": [{"prompt": "x", "metadata": metadata}]})
    assert batch.status_code == 422
    assert batch.json()["errors"][0]["field"] == "metadata"
    assert batch.json()["errors"][0]["line"] == 1
    assert row_counts() == before


def test_batch_metadata_merges_under_items_and_reaches_the_manifest(api: httpx.Client) -> None:
    lines = [
        {"prompt": "a mug", "ref": "sku-1", "seed": 7, "metadata": {"sku": "1", "run": "item"}},
        {"prompt": "a teapot", "aspect_ratio": "16:9"},
    ]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    meta = json.dumps({"run": "nightly", "team": "catalog"})
    reply = api.post(
        "/v1/batches",
        params={"metadata": meta, "name": "n"},
        content=body,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert reply.status_code == 202, reply.text
    batch = reply.json()
    assert batch["metadata"] == {"run": "nightly", "team": "catalog"}
    manifest = [
        json.loads(line)
        for line in api.get(f"/v1/batches/{batch['id']}/manifest").text.splitlines()
    ]
    assert manifest[0]["metadata"] == {"run": "item", "team": "catalog", "sku": "1"}
    assert manifest[1]["metadata"] == {"run": "nightly", "team": "catalog"}
    assert manifest[0]["prompt"] == "a mug"
    assert manifest[0]["parameters"] == {"aspect_ratio": "1:1", "resolution": "1080p", "seed": 7}
    assert manifest[1]["parameters"]["aspect_ratio"] == "16:9"
    job = api.get(f"/v1/jobs/{manifest[0]['job_id']}").json()
    assert job["metadata"]["sku"] == "1"
    found = api.get(f"/v1/jobs?batch_id={batch['id']}&metadata.sku=1").json()["items"]
    assert [item["id"] for item in found] == [manifest[0]["job_id"]]


# --- listings -----------------------------------------------------------------------------------


def test_jobs_list_pages_by_cursor_and_filters(api: httpx.Client) -> None:
    batch = a_batch_of(api, 5)
    seen: list[str] = []
    cursor = None
    while True:
        page = api.get("/v1/jobs", params={"batch_id": batch["id"], "limit": 2, "cursor": cursor})
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5
    by_ref = api.get("/v1/jobs", params={"batch_id": batch["id"], "ref": "r3"}).json()["items"]
    assert [item["ref"] for item in by_ref] == ["r3"]
    failed = failed_job("content_policy")
    found = api.get("/v1/jobs", params={"status": "failed", "error_code": "content_policy"}).json()
    assert str(failed) in [item["id"] for item in found["items"]]
    assert all(item["status"] == "failed" for item in found["items"])
    later = (utcnow() + timedelta(minutes=1)).isoformat()
    assert api.get("/v1/jobs", params={"created_after": later}).json()["items"] == []
    assert api.get("/v1/jobs", params={"created_before": later, "limit": 1}).json()["next_cursor"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=done", "status"),
        ("cursor=nope", "cursor"),
        ("created_after=yesterday", "created_after"),
        ("limit=0", "limit"),
        ("metadata.bad%20key=1", "metadata.bad key"),
        ("batch_id=xyz", "batch_id"),
    ],
)
def test_bad_list_filters_are_422(api: httpx.Client, query: str, field: str) -> None:
    reply = api.get(f"/v1/jobs?{query}")
    assert reply.status_code == 422, reply.text
    assert reply.json()["errors"][0]["field"] == field


def test_batches_list_newest_first_with_counts(api: httpx.Client) -> None:
    tag = uuid.uuid4().hex
    first = a_batch_of(api, 1, metadata={"tag": tag})
    second = a_batch_of(api, 2, metadata={"tag": tag})
    page = api.get("/v1/batches", params={"limit": 1, "metadata.tag": tag}).json()
    assert [item["id"] for item in page["items"]] == [second["id"]]
    assert page["items"][0]["counts"]["queued"] == 2
    rest = api.get("/v1/batches", params={"cursor": page["next_cursor"], "metadata.tag": tag})
    assert [item["id"] for item in rest.json()["items"]] == [first["id"]]
    assert rest.json()["next_cursor"] is None


# --- short ids ----------------------------------------------------------------------------------


def _batch_with_ids(ids: list[uuid.UUID]) -> uuid.UUID:
    now = utcnow()
    with session_scope() as session:
        batch = Batch(id=uuid.uuid4(), total=len(ids), created_at=now)
        batch_store.insert_batch(session, batch=batch)
        batch_store.insert_jobs(
            session,
            batch_id=batch.id,
            priority="batch",
            now=now,
            deadline=now + timedelta(hours=1),
            jobs=[
                NewJob(job_id, i, "p", None, "1:1", "1080p", None, None)
                for i, job_id in enumerate(ids)
            ],
        )
    return batch.id


def test_short_ids_resolve_when_unique_and_list_candidates_when_not(api: httpx.Client) -> None:
    prefix = uuid.uuid4().hex[:8]
    twins = [uuid.UUID(prefix + uuid.uuid4().hex[8:]) for _ in range(2)]
    batch_id = _batch_with_ids(twins)
    lone = str(twins[0])[:13]  # 12 hex digits and a dash: one of them
    if str(twins[1]).startswith(lone):
        pytest.skip("the random ids share 12 digits")
    assert api.get(f"/v1/jobs/{lone}").json()["id"] == str(twins[0])
    ambiguous = api.get(f"/v1/jobs/{prefix}")
    assert ambiguous.status_code == 409, ambiguous.text
    body = ambiguous.json()
    assert body["code"] == "ambiguous_id" and body["errors"][0]["field"] == "job_id"
    assert all(str(twin) in body["message"] for twin in twins)
    assert api.get(f"/v1/batches/{str(batch_id)[:8]}").json()["id"] == str(batch_id)
    assert api.post(f"/v1/jobs/{lone}/cancel").json()["status"] == "cancelled"
    assert api.get(f"/v1/jobs/{uuid.uuid4().hex[:8]}").status_code in (404, 409)
    assert api.get("/v1/jobs/00000000").status_code in (404, 409)
    assert api.get("/v1/jobs/abc").status_code == 422


def test_no_match_is_404(api: httpx.Client) -> None:
    unused = "ffffffff-ffff-ffff-ffff-ff"  # no uuid4 has these version digits
    reply = api.get(f"/v1/jobs/{unused}")
    assert reply.status_code == 404 and reply.json()["code"] == "not_found"
    assert api.get(f"/v1/batches/{unused}").status_code == 404


# --- cancel and retry ---------------------------------------------------------------------------


def test_cancel_a_batch_queued_at_once_running_as_they_can_idempotent(api: httpx.Client) -> None:
    batch = a_batch_of(api, 6)
    ids = [
        uuid.UUID(row[0]) if isinstance(row[0], str) else row[0]
        for row in sql(
            "SELECT id FROM jobs WHERE batch_id = :b ORDER BY batch_index", b=batch["id"]
        )
    ]
    running(ids[0])
    failed = ids[1]
    sql("UPDATE jobs SET status = 'succeeded', finished_at = now() WHERE id = :id", id=ids[2])
    reply = api.post(f"/v1/batches/{batch['id'][:8]}/cancel")
    assert reply.status_code == 200, reply.text
    assert reply.json()["jobs"] == 5
    after = reply.json()["batch"]
    assert after["counts"]["cancelled"] == 5 and after["counts"]["succeeded"] == 1
    assert after["completed"] is True
    events = sql(
        "SELECT count(*) FROM job_events WHERE event = 'cancelled' AND job_id IN "
        "(SELECT id FROM jobs WHERE batch_id = :b)",
        b=batch["id"],
    )[0][0]
    assert events == 5
    again = api.post(f"/v1/batches/{batch['id']}/cancel")
    assert again.status_code == 200 and again.json()["jobs"] == 0
    assert api.get(f"/v1/jobs/{failed}").json()["error"]["code"] == "cancelled"
    assert api.post(f"/v1/batches/{uuid.uuid4()}/cancel").status_code == 404


def test_retry_a_job_and_a_batch_from_the_api(api: httpx.Client) -> None:
    batch = a_batch_of(api, 1)
    failed = failed_job("provider_failed")
    retried = api.post(f"/v1/jobs/{failed}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "queued" and retried.json()["error"] is None
    refused = api.post(f"/v1/jobs/{failed}/retry")
    assert refused.status_code == 409 and refused.json()["code"] == "not_retryable"
    in_batch = [failed_job("output_unavailable", batch=uuid.UUID(batch["id"])) for _ in range(2)]
    other = failed_job("content_policy", batch=uuid.UUID(batch["id"]))
    reply = api.post(f"/v1/batches/{batch['id']}/retry", params={"code": "output_unavailable"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["jobs"] == 2
    statuses = {
        row[0]: row[1]
        for row in sql(
            "SELECT id, status FROM jobs WHERE id IN (:a, :b, :c)",
            a=in_batch[0],
            b=in_batch[1],
            c=other,
        )
    }
    assert statuses == {in_batch[0]: "queued", in_batch[1]: "queued", other: JobStatus.FAILED.value}
    assert (
        api.post(f"/v1/batches/{batch['id']}/retry", params={"status": "cancelled"}).status_code
        == 422
    )
