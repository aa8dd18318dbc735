"""``Client``: the imagegen-queue HTTP API from synchronous code.

```python
with Client("https://imagegen.internal", token) as client:
    job = client.jobs.wait(client.jobs.create("a red fox in snow").id, timeout=600)
    client.download(job.images[0], "fox.png")
```
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from imagegen_client import _calls, _files
from imagegen_client._calls import Call
from imagegen_client._retry import RetryPolicy, parse_retry_after, poll_delays
from imagegen_client.errors import APIError, TransportError, WaitTimeout, from_answer
from imagegen_client.resources import (
    Batch,
    BatchAction,
    Delivery,
    Image,
    Job,
    ManifestLine,
    Page,
    page_from_api,
)

#: Seconds for one request (connect: 5): a slow network fails over to a retry, not a hang.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
#: Link statuses that mean "this presigned link has expired" (S3 answers 403).
EXPIRED_LINK = frozenset({400, 403})


class Client:
    """The API at ``base_url`` with a bearer ``token``; a context manager (or call ``close``).

    ``timeout``: seconds (or an ``httpx.Timeout``) per request; ``retry``: when and how
    patiently to try again (connection errors, 429, 5xx; see ``RetryPolicy``).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {token}", "User-Agent": "imagegen-client/0.1"}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)
        # presigned links go elsewhere (S3): never with the token
        self._links = httpx.Client(timeout=timeout, follow_redirects=True)
        self.jobs = Jobs(self)
        self.batches = Batches(self)
        self.fleet = Fleet(self)
        self.webhooks = Webhooks(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        self._links.close()

    # --- sending ------------------------------------------------------------------------------

    def _call(self, call: Call) -> Any:
        """Send ``call`` (with retries) and answer its JSON body."""
        response = self._send(call)
        return response.json() if response.content else None

    def _send(self, call: Call, *, stream: bool = False) -> httpx.Response:
        def request() -> httpx.Request:
            content = files.enter_context(call.file.open("rb")) if call.file else None
            return self._http.build_request(
                call.method,
                call.path,
                params=call.params,
                json=call.json,
                content=content,
                headers=call.headers,
            )

        with ExitStack() as files:
            return self._with_retries(self._http, request, safe=call.safe, stream=stream)

    def _with_retries(
        self,
        http: httpx.Client,
        request: Callable[[], httpx.Request],
        *,
        safe: bool,
        stream: bool = False,
    ) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = http.send(request(), stream=stream)
            except httpx.TransportError as exc:
                wait = self.retry.after_error(exc, attempt, safe=safe)
                if wait is None:
                    raise TransportError(f"{type(exc).__name__}: {exc}") from exc
            else:
                if response.status_code < 400:
                    return response
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                wait = self.retry.after_status(
                    response.status_code, attempt, safe=safe, retry_after_s=retry_after
                )
                if wait is None:
                    raise _error(response, retry_after)
                response.close()
            self._sleep(wait)
            attempt += 1

    def _pages(self, call_for: Callable[[str | None], Call], build: Any) -> Iterator[Any]:
        cursor: str | None = None
        while True:
            page: Page = page_from_api(self._call(call_for(cursor)), build)
            yield from page.items
            if not page.next_cursor or not page.items:
                return
            cursor = page.next_cursor

    # --- downloads ----------------------------------------------------------------------------

    def download(self, image: Image, path: str | os.PathLike[str]) -> Path:
        """Stream ``image`` to ``path`` and check its sha256 and size (``ChecksumMismatch`` if
        they differ; nothing is left at ``path`` then). An expired link is refreshed first
        through the image's job (``GET /v1/jobs/{id}`` presigns new ones)."""
        if _files.expired(image):
            image = self._refreshed(image)
        try:
            return self._fetch(image, path)
        except APIError as exc:
            if exc.status not in EXPIRED_LINK or not image.job_id:
                raise
            return self._fetch(self._refreshed(image), path)

    def _refreshed(self, image: Image) -> Image:
        if not image.job_id:
            raise ValueError("this image has no job id to refresh its link through")
        job = self.jobs.get(image.job_id)
        return next(i for i in job.images if i.index == image.index)

    def _fetch(self, image: Image, path: str | os.PathLike[str]) -> Path:
        assert image.url
        local = _files.local_path(image.url)
        sink = _files.Sink(image, path)
        try:
            if local:
                with local.open("rb") as source:
                    while chunk := source.read(_files.CHUNK):
                        sink.write(chunk)
            else:
                url = image.url
                response = self._with_retries(
                    self._links,
                    lambda: self._links.build_request("GET", url),
                    safe=True,
                    stream=True,
                )
                try:
                    for chunk in response.iter_bytes(_files.CHUNK):
                        sink.write(chunk)
                finally:
                    response.close()
        except BaseException:
            sink.discard()
            raise
        return sink.finish()


def _error(response: httpx.Response, retry_after: float | None) -> APIError:
    try:
        body = response.json() if response.read() else None
    except ValueError:
        body = None
    finally:
        response.close()
    return from_answer(response.status_code, body, response.headers, retry_after)


def _wait(
    fetch: Callable[[], Any],
    done: Callable[[Any], bool],
    *,
    timeout: float | None,
    interval_s: float,
    max_interval_s: float,
    sleep: Callable[[float], None],
    what: str,
    on_update: Callable[[Any], None] | None = None,
) -> Any:
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = poll_delays(interval_s, max_interval_s)
    for n in itertools.count():
        current = fetch()
        if on_update:
            on_update(current)
        if done(current):
            return current
        pause = delay(n)
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(f"{what} had not ended after {timeout} s", current)
            pause = min(pause, left)
        sleep(pause)
    raise AssertionError("unreachable")  # count() never ends


class Jobs:
    """``client.jobs``: one generation job at a time."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        prompt: str,
        *,
        resolution: str | None = None,
        aspect_ratio: str | None = None,
        seed: int | None = None,
        images: list[str] | None = None,
        callback_url: str | None = None,
        ref: str | None = None,
        deadline_s: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Job:
        """Enqueue one job and answer it (status ``queued``).

        ``idempotency_key``: the same key and request give the same job, never a second paid
        generation (another request with the key: ``Conflict``). Without one a key is
        generated for this call, so the client's own retries never enqueue twice.
        """
        body = {
            "prompt": prompt,
            "resolution": resolution,
            "aspect_ratio": aspect_ratio,
            "seed": seed,
            "images": images,
            "callback_url": callback_url,
            "ref": ref,
            "deadline_s": deadline_s,
            "metadata": metadata,
            **fields,
        }
        return Job.from_api(self._client._call(_calls.create_job(body, idempotency_key)))

    def get(self, job_id: str) -> Job:
        """The job now, its images with freshly presigned links."""
        return Job.from_api(self._client._call(_calls.job(job_id)))

    def cancel(self, job_id: str) -> Job:
        """Cancel an active job; an ended one is left as it is. Answers the job."""
        return Job.from_api(self._client._call(_calls.job(job_id, "cancel")))

    def retry(self, job_id: str) -> Job:
        """Send a failed job back to the queue (a new paid generation). Never retried by the
        client after the request may have arrived."""
        return Job.from_api(self._client._call(_calls.job(job_id, "retry")))

    def list(
        self,
        *,
        status: str | Iterable[str] | None = None,
        batch_id: str | None = None,
        ref: str | None = None,
        error_code: str | None = None,
        created_after: Any = None,
        created_before: Any = None,
        metadata: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> Iterator[Job]:
        """Every matching job, newest first, fetched a page (``limit`` jobs) at a time."""
        filters = {
            "status": [status] if isinstance(status, str) else status,
            "batch_id": batch_id,
            "ref": ref,
            "error_code": error_code,
            "created_after": created_after,
            "created_before": created_before,
            "metadata": metadata,
            "limit": limit,
        }
        return self._client._pages(lambda c: _calls.list_jobs(filters, c), Job.from_api)

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = 600,
        interval_s: float = 1.0,
        max_interval_s: float = 15.0,
    ) -> Job:
        """Poll until the job has ended (succeeded, failed or cancelled) and answer it; waits
        grow from ``interval_s`` to ``max_interval_s`` with jitter. ``WaitTimeout`` (with the
        last job seen) after ``timeout`` seconds; None waits for ever."""
        return _wait(
            lambda: self.get(job_id),
            lambda job: job.done,
            timeout=timeout,
            interval_s=interval_s,
            max_interval_s=max_interval_s,
            sleep=self._client._sleep,
            what=f"job {job_id}",
        )


class Batches:
    """``client.batches``: many jobs at once."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        items: Iterable[Mapping[str, Any]] | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        name: str | None = None,
        callback_url: str | None = None,
        deadline_s: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Batch:
        """Enqueue ``items`` (job dicts: the fields of ``jobs.create`` and an optional unique
        ``ref``) or the JSONL file at ``path`` (streamed). Every line is checked first: one bad
        line and nothing is enqueued (``InvalidRequest``, each problem with its ``line``).
        Idempotent like ``jobs.create``."""
        options = {
            "name": name,
            "callback_url": callback_url,
            "deadline_s": deadline_s,
            "metadata": metadata,
        }
        source = Path(path) if path is not None else None
        call = _calls.create_batch(items, source, options, idempotency_key)
        return Batch.from_api(self._client._call(call))

    def get(self, batch_id: str) -> Batch:
        return Batch.from_api(self._client._call(_calls.batch(batch_id)))

    def cancel(self, batch_id: str) -> BatchAction:
        """Cancel every job of the batch that has not ended: queued ones at once, those at the
        provider at their next step. Idempotent (again: ``jobs`` 0)."""
        return BatchAction.from_api(self._client._call(_calls.batch(batch_id, "cancel")))

    def retry(
        self, batch_id: str, *, status: str = "failed", code: str | None = None
    ) -> BatchAction:
        """Send the batch's failed jobs (of error ``code``, if given) back to the queue: each
        a new paid generation, so never retried by the client once it may have arrived."""
        params = _calls.query({"status": status, "code": code})
        return BatchAction.from_api(self._client._call(_calls.batch(batch_id, "retry", params)))

    def list(self, *, limit: int | None = None, **filters: Any) -> Iterator[Batch]:
        """Every batch, newest first, a page at a time."""
        given = {**filters, "limit": limit}
        return self._client._pages(lambda c: _calls.list_batches(given, c), Batch.from_api)

    def wait(
        self,
        batch_id: str,
        *,
        timeout: float | None = None,
        interval_s: float = 2.0,
        max_interval_s: float = 30.0,
        on_progress: Callable[[Batch], None] | None = None,
    ) -> Batch:
        """Poll until every job of the batch has ended; ``on_progress`` sees each reading."""
        return _wait(
            lambda: self.get(batch_id),
            lambda batch: batch.completed,
            timeout=timeout,
            interval_s=interval_s,
            max_interval_s=max_interval_s,
            sleep=self._client._sleep,
            what=f"batch {batch_id}",
            on_update=on_progress,
        )

    def manifest(self, batch_id: str) -> Iterator[ManifestLine]:
        """The manifest, one line per job in batch order, read as it streams in."""
        response = self._client._send(_calls.batch(batch_id, "manifest"), stream=True)
        try:
            for line in response.iter_lines():
                if line.strip():
                    yield ManifestLine.from_api(json.loads(line))
        finally:
            response.close()


class Webhooks:
    """``client.webhooks``: the events sent to callback URLs, and sending one again."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def deliveries(
        self,
        *,
        status: str | None = None,
        job_id: str | None = None,
        batch_id: str | None = None,
        limit: int | None = None,
    ) -> Iterator[Delivery]:
        """Deliveries (``pending``, ``delivered``, ``failed``) with their attempts, newest first."""
        filters = {"status": status, "job_id": job_id, "batch_id": batch_id, "limit": limit}
        return self._client._pages(lambda c: _calls.list_deliveries(filters, c), Delivery.from_api)

    def redeliver(self, delivery_id: str) -> Delivery:
        """Send the event again (a new attempt, the same event id)."""
        return Delivery.from_api(self._client._call(_calls.redeliver(delivery_id)))


class Fleet:
    """``client.fleet``: whether submissions are paused, and pausing or resuming them."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def get(self) -> dict[str, Any]:
        return self._client._call(_calls.fleet())

    def pause(self, reason: str | None = None) -> dict[str, Any]:
        return self._client._call(_calls.fleet("pause", reason))

    def resume(self) -> dict[str, Any]:
        return self._client._call(_calls.fleet("resume"))
