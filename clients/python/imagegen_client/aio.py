"""``AsyncClient``: ``Client``'s calls as coroutines, for asyncio services.

```python
async with AsyncClient("https://imagegen.internal", token) as client:
    job = await client.jobs.create("a red fox in snow")
    job = await client.jobs.wait(job.id, timeout=600)
    async for failed in client.jobs.list(status="failed"):
        ...
```
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from imagegen_client import _calls, _files
from imagegen_client._calls import Call
from imagegen_client._retry import RetryPolicy, parse_retry_after, poll_delays
from imagegen_client.client import DEFAULT_TIMEOUT, EXPIRED_LINK
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


class AsyncClient:
    """The API at ``base_url`` with a bearer ``token``: ``async with AsyncClient(...)`` (or
    ``await client.aclose()``). Same arguments, retries and timeouts as ``Client``."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {token}", "User-Agent": "imagegen-client/0.1"}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout
        )
        self._links = httpx.AsyncClient(timeout=timeout, follow_redirects=True)
        self.jobs = AsyncJobs(self)
        self.batches = AsyncBatches(self)
        self.fleet = AsyncFleet(self)
        self.webhooks = AsyncWebhooks(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._links.aclose()

    # --- sending ------------------------------------------------------------------------------

    async def _call(self, call: Call) -> Any:
        response = await self._send(call)
        return response.json() if response.content else None

    async def _send(self, call: Call, *, stream: bool = False) -> httpx.Response:
        content = await asyncio.to_thread(call.file.read_bytes) if call.file else None

        def request() -> httpx.Request:
            return self._http.build_request(
                call.method,
                call.path,
                params=call.params,
                json=call.json,
                content=content,
                headers=call.headers,
            )

        return await self._with_retries(self._http, request, safe=call.safe, stream=stream)

    async def _with_retries(
        self,
        http: httpx.AsyncClient,
        request: Callable[[], httpx.Request],
        *,
        safe: bool,
        stream: bool = False,
    ) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await http.send(request(), stream=stream)
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
                    raise await _error(response, retry_after)
                await response.aclose()
            await self._sleep(wait)
            attempt += 1

    async def _pages(
        self, call_for: Callable[[str | None], Call], build: Any
    ) -> AsyncIterator[Any]:
        cursor: str | None = None
        while True:
            page: Page = page_from_api(await self._call(call_for(cursor)), build)
            for item in page.items:
                yield item
            if not page.next_cursor or not page.items:
                return
            cursor = page.next_cursor

    # --- downloads ----------------------------------------------------------------------------

    async def download(self, image: Image, path: str | os.PathLike[str]) -> Path:
        """As ``Client.download``: streamed, sha256 checked, an expired link refreshed."""
        if _files.expired(image):
            image = await self._refreshed(image)
        try:
            return await self._fetch(image, path)
        except APIError as exc:
            if exc.status not in EXPIRED_LINK or not image.job_id:
                raise
            return await self._fetch(await self._refreshed(image), path)

    async def _refreshed(self, image: Image) -> Image:
        if not image.job_id:
            raise ValueError("this image has no job id to refresh its link through")
        job = await self.jobs.get(image.job_id)
        return next(i for i in job.images if i.index == image.index)

    async def _fetch(self, image: Image, path: str | os.PathLike[str]) -> Path:
        assert image.url
        local = _files.local_path(image.url)
        sink = _files.Sink(image, path)
        try:
            if local:
                sink.write(await asyncio.to_thread(local.read_bytes))
            else:
                url = image.url
                response = await self._with_retries(
                    self._links,
                    lambda: self._links.build_request("GET", url),
                    safe=True,
                    stream=True,
                )
                try:
                    async for chunk in response.aiter_bytes(_files.CHUNK):
                        sink.write(chunk)
                finally:
                    await response.aclose()
        except BaseException:
            sink.discard()
            raise
        return sink.finish()


async def _error(response: httpx.Response, retry_after: float | None) -> APIError:
    try:
        body = response.json() if await response.aread() else None
    except ValueError:
        body = None
    finally:
        await response.aclose()
    return from_answer(response.status_code, body, response.headers, retry_after)


async def _wait(
    fetch: Callable[[], Awaitable[Any]],
    done: Callable[[Any], bool],
    *,
    timeout: float | None,
    interval_s: float,
    max_interval_s: float,
    sleep: Callable[[float], Awaitable[None]],
    what: str,
    on_update: Callable[[Any], None] | None = None,
) -> Any:
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = poll_delays(interval_s, max_interval_s)
    for n in itertools.count():
        current = await fetch()
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
        await sleep(pause)
    raise AssertionError("unreachable")  # count() never ends


class AsyncJobs:
    """``client.jobs`` of ``AsyncClient``: see ``Jobs``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
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
        """See ``Jobs.create``: a key is generated when none is given."""
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
        return Job.from_api(await self._client._call(_calls.create_job(body, idempotency_key)))

    async def get(self, job_id: str) -> Job:
        return Job.from_api(await self._client._call(_calls.job(job_id)))

    async def cancel(self, job_id: str) -> Job:
        return Job.from_api(await self._client._call(_calls.job(job_id, "cancel")))

    async def retry(self, job_id: str) -> Job:
        return Job.from_api(await self._client._call(_calls.job(job_id, "retry")))

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
    ) -> AsyncIterator[Job]:
        """``async for job in client.jobs.list(...)``: see ``Jobs.list``."""
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

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = 600,
        interval_s: float = 1.0,
        max_interval_s: float = 15.0,
    ) -> Job:
        return await _wait(
            lambda: self.get(job_id),
            lambda job: job.done,
            timeout=timeout,
            interval_s=interval_s,
            max_interval_s=max_interval_s,
            sleep=self._client._sleep,
            what=f"job {job_id}",
        )


class AsyncBatches:
    """``client.batches`` of ``AsyncClient``: see ``Batches``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
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
        """See ``Batches.create``; a JSONL ``path`` is read into memory first (``Client``
        streams it from the file)."""
        options = {
            "name": name,
            "callback_url": callback_url,
            "deadline_s": deadline_s,
            "metadata": metadata,
        }
        source = Path(path) if path is not None else None
        call = _calls.create_batch(items, source, options, idempotency_key)
        return Batch.from_api(await self._client._call(call))

    async def get(self, batch_id: str) -> Batch:
        return Batch.from_api(await self._client._call(_calls.batch(batch_id)))

    async def cancel(self, batch_id: str) -> BatchAction:
        return BatchAction.from_api(await self._client._call(_calls.batch(batch_id, "cancel")))

    async def retry(
        self, batch_id: str, *, status: str = "failed", code: str | None = None
    ) -> BatchAction:
        params = _calls.query({"status": status, "code": code})
        call = _calls.batch(batch_id, "retry", params)
        return BatchAction.from_api(await self._client._call(call))

    def list(self, *, limit: int | None = None, **filters: Any) -> AsyncIterator[Batch]:
        given = {**filters, "limit": limit}
        return self._client._pages(lambda c: _calls.list_batches(given, c), Batch.from_api)

    async def wait(
        self,
        batch_id: str,
        *,
        timeout: float | None = None,
        interval_s: float = 2.0,
        max_interval_s: float = 30.0,
        on_progress: Callable[[Batch], None] | None = None,
    ) -> Batch:
        return await _wait(
            lambda: self.get(batch_id),
            lambda batch: batch.completed,
            timeout=timeout,
            interval_s=interval_s,
            max_interval_s=max_interval_s,
            sleep=self._client._sleep,
            what=f"batch {batch_id}",
            on_update=on_progress,
        )

    async def manifest(self, batch_id: str) -> AsyncIterator[ManifestLine]:
        """``async for line in client.batches.manifest(id)``."""
        response = await self._client._send(_calls.batch(batch_id, "manifest"), stream=True)
        try:
            async for line in response.aiter_lines():
                if line.strip():
                    yield ManifestLine.from_api(json.loads(line))
        finally:
            await response.aclose()


class AsyncWebhooks:
    """``client.webhooks`` of ``AsyncClient``: see ``Webhooks``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    def deliveries(
        self,
        *,
        status: str | None = None,
        job_id: str | None = None,
        batch_id: str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[Delivery]:
        filters = {"status": status, "job_id": job_id, "batch_id": batch_id, "limit": limit}
        return self._client._pages(lambda c: _calls.list_deliveries(filters, c), Delivery.from_api)

    async def redeliver(self, delivery_id: str) -> Delivery:
        return Delivery.from_api(await self._client._call(_calls.redeliver(delivery_id)))


class AsyncFleet:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def get(self) -> dict[str, Any]:
        return await self._client._call(_calls.fleet())

    async def pause(self, reason: str | None = None) -> dict[str, Any]:
        return await self._client._call(_calls.fleet("pause", reason))

    async def resume(self) -> dict[str, Any]:
        return await self._client._call(_calls.fleet("resume"))
