"""The client library (clients/python, ``imagegen_client``) against a real `imagegen api`
process, Postgres, Redis and S3: what another service sees. No worker here (jobs stay queued);
tests/e2e/test_client_e2e.py runs jobs to their end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from imagegen_client import (
    AsyncClient,
    AuthenticationError,
    Batch,
    Client,
    Conflict,
    InvalidRequest,
    Job,
    NotFound,
    PermissionDenied,
    RetryPolicy,
    TransportError,
)
from sqlalchemy import text

from tests.conftest import ROOT
from tests.harness import free_port
from tests.producers import PRODUCER_ENV, TOKEN, api_process, configure, row_counts
from worker.db.engine import get_engine

pytestmark = pytest.mark.integration
#: Wrong tokens from one address before 429, and how long that lasts (the 429 test).
AUTH_LIMIT = {"IMAGEGEN_AUTH_MAX_FAILURES": "3", "IMAGEGEN_AUTH_FAILURE_WINDOW_S": "2"}


@pytest.fixture(scope="module")
def api_url(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("client-api") / "api.log"
    with api_process({**service_env, **PRODUCER_ENV, **AUTH_LIMIT}, log) as url:
        yield url


@pytest.fixture
def client(configured, monkeypatch: pytest.MonkeyPatch, api_url: str) -> Iterator[Client]:
    configure(monkeypatch)
    with Client(api_url, TOKEN) as client:
        yield client


class Sleeps(list[float]):
    """Records each wait of a client instead of waiting (the 429 test really waits)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def job_keys() -> list[str | None]:
    with get_engine().connect() as conn:
        return list(conn.execute(text("SELECT idempotency_key FROM jobs")).scalars())


# --- jobs ---------------------------------------------------------------------------------------


def test_create_answers_a_typed_job_and_get_and_cancel_follow_it(client: Client) -> None:
    job = client.jobs.create("a red fox in snow", resolution="2K", aspect_ratio="16:9", ref="r-1")
    assert isinstance(job, Job)
    assert (job.status, job.ref, job.request["resolution"]) == ("queued", "r-1", "2K")
    assert job.timings.created_at is not None and job.timings.created_at.tzinfo is not None
    assert not job.done and job.images == ()
    assert client.jobs.get(job.id) == job
    cancelled = client.jobs.cancel(job.id)
    assert (cancelled.status, cancelled.done) == ("cancelled", True)
    assert client.jobs.cancel(job.id).status == "cancelled"  # idempotent


def test_every_create_carries_an_idempotency_key(client: Client) -> None:
    # Given no key from the caller, two calls are two jobs, each with a key of its own
    first = client.jobs.create("a fox")
    second = client.jobs.create("a fox")
    assert first.id != second.id
    keys = job_keys()
    assert len(keys) == 2 and all(keys) and len(set(keys)) == 2
    # And the caller's key gives the same job back; with another body it is a conflict
    mine = client.jobs.create("a badger", idempotency_key="order-1234")
    assert client.jobs.create("a badger", idempotency_key="order-1234").id == mine.id
    with pytest.raises(Conflict) as raised:
        client.jobs.create("a stoat", idempotency_key="order-1234")
    assert (raised.value.status, raised.value.code) == (409, "idempotency_conflict")
    assert row_counts()["jobs"] == 3


def test_a_lost_answer_is_retried_with_the_same_key_and_enqueues_once(
    client: Client, api_url: str
) -> None:
    # Given a proxy that passes the first request on but loses the API's answer
    with LosingProxy(api_url, lose=1) as proxy, Client(proxy.url, TOKEN) as through:
        # When a job is created through it
        job = through.jobs.create("a fox behind a flaky network")
        # Then the client tried again with its key, and there is one job
        assert proxy.lost == 1 and proxy.connections == 2
    assert row_counts()["jobs"] == 1
    assert client.jobs.get(job.id).request["prompt"] == "a fox behind a flaky network"


def test_a_request_without_a_key_is_never_sent_twice(client: Client, api_url: str) -> None:
    job = client.jobs.create("a failed fox")
    # A retry of a job is a new paid generation: an answer lost on the way is not retried
    with LosingProxy(api_url, lose=1) as proxy, Client(proxy.url, TOKEN) as through:
        with pytest.raises(TransportError):
            through.jobs.retry(job.id)
        assert proxy.connections == 1


def test_errors_carry_the_api_code_field_and_rule(client: Client) -> None:
    with pytest.raises(InvalidRequest) as raised:
        client.jobs.create("a fox", seed=0)
    error = raised.value
    assert (error.status, error.code, error.field) == (422, "invalid_request", "seed")
    assert "greater than or equal to 1" in (error.rule or "")
    with pytest.raises(NotFound) as missing:
        client.jobs.get("00000000-0000-4000-8000-000000000000")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert row_counts()["jobs"] == 0


def test_connection_errors_are_retried_with_backoff_then_raised() -> None:
    sleeps = Sleeps()
    policy = RetryPolicy(max_retries=3, backoff_base_s=0.1)
    with (
        Client(f"http://127.0.0.1:{free_port()}", TOKEN, retry=policy, sleep=sleeps) as dead,
        pytest.raises(TransportError, match="ConnectError"),
    ):
        dead.jobs.get("00000000-0000-4000-8000-000000000000")
    assert len(sleeps) == 3
    assert all(0 <= wait <= 0.1 * 2**n for n, wait in enumerate(sleeps))


def test_a_429_is_waited_out_as_retry_after_says(api_url: str, configured) -> None:
    # Given an address that sent as many wrong tokens as the API tolerates
    for _ in range(3):
        httpx.get(f"{api_url}/v1/fleet", headers={"Authorization": "Bearer " + "x" * 40})
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    # When a client with a wrong token calls: 429 with Retry-After, waited, then a plain 401
    with (
        Client(api_url, "wrong-token-" * 4, sleep=sleep) as wrong,
        pytest.raises(AuthenticationError) as raised,
    ):
        wrong.fleet.get()
    assert raised.value.status == 401 and raised.value.code == "unauthorized"
    assert sleeps and all(1 <= s <= 3 for s in sleeps)  # the Retry-After of a 2 s window


def test_a_key_without_the_scope_raises_permission_denied(client: Client, api_url: str) -> None:
    from worker.service import keys

    # Given a tenant's read-only key
    reader = str(keys.create(tenant="readers", scopes="read")["key"])
    # When it enqueues, it gets a PermissionDenied naming the scope it lacks
    with Client(api_url, reader) as limited, pytest.raises(PermissionDenied) as raised:
        limited.jobs.create("a fox on a read-only key")
    assert (raised.value.status, raised.value.code) == (403, "forbidden")
    assert "'produce'" in raised.value.message


# --- batches ------------------------------------------------------------------------------------


def test_batches_from_items_and_from_a_jsonl_file(client: Client, tmp_path: Path) -> None:
    batch = client.batches.create(
        [{"prompt": "a mug", "ref": "sku-1"}, {"prompt": "a teapot", "ref": "sku-2"}],
        name="nightly",
    )
    assert isinstance(batch, Batch)
    assert (batch.name, batch.total, batch.counts["queued"], batch.completed) == (
        "nightly",
        2,
        2,
        False,
    )
    source = tmp_path / "prompts.jsonl"
    source.write_text(
        "".join(json.dumps({"prompt": f"p {n}", "ref": f"l-{n}"}) + "\n" for n in range(5))
    )
    from_file = client.batches.create(path=source, name="file")
    assert (from_file.total, from_file.name) == (5, "file")
    assert client.batches.get(from_file.id).total == 5
    lines = list(client.batches.manifest(from_file.id))
    assert [(line.index, line.ref, line.status) for line in lines] == [
        (n, f"l-{n}", "queued") for n in range(5)
    ]
    assert row_counts()["jobs"] == 7


def test_a_bad_batch_lists_every_bad_line_and_enqueues_nothing(client: Client) -> None:
    with pytest.raises(InvalidRequest) as raised:
        client.batches.create([{"prompt": "ok"}, {"prompt": ""}, {"prompt": "x", "seed": "1"}])
    assert {(p.line, p.field) for p in raised.value.errors} == {(2, "prompt"), (3, "seed")}
    assert row_counts()["jobs"] == 0


def test_a_batch_replayed_with_its_key_is_the_same_batch(client: Client) -> None:
    items = [{"prompt": "a mug"}]
    first = client.batches.create(items, idempotency_key="nightly-2026-12-02")
    assert client.batches.create(items, idempotency_key="nightly-2026-12-02").id == first.id
    assert row_counts()["batches"] == 1


# --- listing, control, short ids, metadata ------------------------------------------------------


def test_jobs_list_iterates_over_every_page_with_filters(client: Client) -> None:
    # Given five jobs of a batch, two of them tagged, and one job of its own
    batch = client.batches.create(
        [
            {
                "prompt": f"mug {n}",
                "ref": f"sku-{n}",
                **({"metadata": {"team": "ads"}} if n < 2 else {}),
            }
            for n in range(5)
        ]
    )
    alone = client.jobs.create("a teapot", ref="sku-9", metadata={"team": "ads", "order": 7})
    # When they are listed two at a time
    listed = list(client.jobs.list(limit=2))
    # Then every job comes once, newest first
    assert len(listed) == 6 and len({j.id for j in listed}) == 6
    assert listed[0].id == alone.id
    assert {j.ref for j in client.jobs.list(batch_id=batch.id, limit=2)} == {
        f"sku-{n}" for n in range(5)
    }
    assert [j.id for j in client.jobs.list(ref="sku-9")] == [alone.id]
    assert alone.metadata == {"team": "ads", "order": 7}
    assert len(list(client.jobs.list(metadata={"team": "ads"}))) == 3
    assert [j.id for j in client.jobs.list(metadata={"team": "ads", "order": 7})] == [alone.id]
    client.jobs.cancel(alone.id)
    assert [j.id for j in client.jobs.list(status=["cancelled", "failed"])] == [alone.id]
    assert len(list(client.jobs.list(status="queued", limit=1))) == 5


def test_batches_list_cancel_and_short_ids(client: Client) -> None:
    first = client.batches.create([{"prompt": "a"}], name="first", metadata={"night": "mon"})
    second = client.batches.create([{"prompt": "b"}, {"prompt": "c"}], name="second")
    assert [b.id for b in client.batches.list(limit=1)] == [second.id, first.id]
    assert [b.id for b in client.batches.list(metadata={"night": "mon"})] == [first.id]
    assert client.batches.get(first.id[:8]).metadata == {"night": "mon"}  # a short id
    cancelled = client.batches.cancel(second.id)
    assert (cancelled.jobs, cancelled.batch.counts["cancelled"]) == (2, 2)
    assert client.batches.cancel(second.id).jobs == 0  # idempotent
    job = client.jobs.create("short")
    assert client.jobs.get(job.id[:8]).id == job.id


def test_retrying_a_job_that_did_not_fail_is_a_conflict(client: Client) -> None:
    job = client.jobs.create("a queued fox")
    with pytest.raises(Conflict) as raised:
        client.jobs.retry(job.id)
    assert raised.value.code == "not_retryable"
    batch = client.batches.create([{"prompt": "x"}])
    assert client.batches.retry(batch.id).jobs == 0


# --- fleet --------------------------------------------------------------------------------------


def test_pause_without_a_reason_and_resume(client: Client) -> None:
    assert client.fleet.pause()["paused"] is True
    assert client.fleet.get()["paused"] is True
    assert client.fleet.resume()["paused"] is False


# --- the asyncio client -------------------------------------------------------------------------


def test_the_async_client_does_the_same(client: Client, api_url: str) -> None:
    async def scenario() -> tuple[Job, Job, Batch, list[str]]:
        async with AsyncClient(api_url, TOKEN) as aclient:
            job = await aclient.jobs.create("an async fox")
            cancelled = await aclient.jobs.cancel(job.id)
            batch = await aclient.batches.create([{"prompt": "a", "ref": "a"}, {"prompt": "b"}])
            refs = [line.job_id async for line in aclient.batches.manifest(batch.id)]
            with pytest.raises(InvalidRequest):
                await aclient.jobs.create("")
            return job, cancelled, batch, refs

    job, cancelled, batch, job_ids = asyncio.run(scenario())
    assert (job.status, cancelled.status, batch.total, len(job_ids)) == (
        "queued",
        "cancelled",
        2,
        2,
    )
    assert client.jobs.get(job.id).status == "cancelled"


# --- a network that loses answers ---------------------------------------------------------------


class LosingProxy:
    """A TCP proxy to the API on 127.0.0.1 that passes every request on but, for its first
    ``lose`` connections, drops the answer and closes the connection (the request was
    processed; the caller never hears of it)."""

    def __init__(self, upstream: str, lose: int) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.lose, self.lost, self.connections = lose, 0, 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> LosingProxy:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            losing = self.lost < self.lose
            self.lost += losing
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=_pipe, args=(conn, upstream, False), daemon=True).start()
            threading.Thread(target=_pipe, args=(upstream, conn, losing), daemon=True).start()


def _pipe(source: socket.socket, target: socket.socket, lose: bool) -> None:
    try:
        while data := source.recv(65536):
            if lose:
                break  # the answer arrived: drop it and hang up
            target.sendall(data)
    except OSError:
        pass
    for sock in (source, target):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def test_the_readme_in_process_examples_run_as_written(client: Client) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    examples = [block for block in blocks if "from worker.producer import" in block]
    assert len(examples) == 2  # a job, a batch
    for example in examples:  # the first once failed with NameError: Session
        exec(compile(example, "README.md", "exec"), {})
    prompts = sorted(j.request["prompt"] for j in client.jobs.list())
    assert prompts == ["a mug", "a red fox in snow", "a teapot", "a teapot"]
