"""JSON request bodies, read by one reader: ``worker.core.untrusted.load_json``.

FastAPI decodes a JSON body with ``json.loads`` and answers 400 ("There was an error parsing the
body") to invalid UTF-8, and a deeply nested document exhausts the recursion limit. Routes of
:class:`JsonBodyRoute` read their body with :func:`load_json` before FastAPI does, so invalid
UTF-8, invalid JSON and nesting beyond the limit are 422s naming ``body`` and the rule, like
every other invalid input. Routes that read their body themselves (``/v1/batches``) call
:func:`load_json` directly.
"""

from __future__ import annotations

import email.message
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from worker.core.untrusted import load_json

__all__ = ["JsonBodyRoute", "load_json"]


class _JsonRequest(Request):
    """A request whose ``json()`` is the document :func:`load_json` read (FastAPI calls it)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = load_json(await self.body())
        return self._json


class JsonBodyRoute(APIRoute):
    """A route whose JSON body is read (and refused, 422) before FastAPI validates it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def read_first(request: Request) -> Response:
            request = _JsonRequest(request.scope, request.receive)
            if _is_json(request.headers.get("content-type")) and await request.body():
                await request.json()  # raises BadInput here, outside FastAPI's catch-all
            return await handler(request)

        return read_first


def _is_json(content_type: str | None) -> bool:
    """What FastAPI reads as JSON: no content type, ``application/json`` or ``...+json``."""
    if not content_type:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )
