"""A cap on request bodies, enforced while they stream in (ASGI middleware).

A body larger than the route's cap is answered 413 before it is read whole, whether or not it
announced its ``Content-Length``; nothing downstream sees it.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import Problem, error_response


class _TooLarge(HTTPException):
    """Raised while reading: FastAPI passes HTTP exceptions through to the error handlers."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"must be at most {limit} bytes")


class BodyLimit:
    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        if _announced(scope) > limit:
            await _refuse(limit, scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, _counting(receive, limit), sending)
        except _TooLarge:
            if started:
                raise
            await _refuse(limit, scope, receive, send)


def _announced(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def _counting(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge(limit)
        return message

    return counted


async def _refuse(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
    response = error_response(
        413,
        "too_large",
        f"the body must be at most {limit} bytes",
        [Problem(field="body", rule=f"must be at most {limit} bytes")],
    )
    await response(scope, receive, send)
