"""The emulator's HTTP face: one starlette endpoint that hands every request to the API.

Thin on purpose: it reads the method, the raw path (percent-encoding intact, so an encoded ``/``
in an external id stays inside its segment), the query, the body and the ``Authorization``
header into an :class:`~.api.ApiRequest`, lets :class:`~.api.SalesforceApi` answer, holds the
answer for its ``delay`` (the ``slow`` fault) unless the server is closing, and writes it out
with Salesforce's content type.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from crmphone._serving import url_host

from .api import ApiRequest, SalesforceApi

__all__ = ["JSON_CONTENT_TYPE", "create_app"]

JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
"""The content type of Salesforce's JSON answers."""

_METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"]


def create_app(api: SalesforceApi, closing: asyncio.Event | None = None) -> Starlette:
    """The ASGI app serving ``api``; setting ``closing`` cuts short answers held by ``slow``."""
    closing_event = closing if closing is not None else asyncio.Event()

    async def endpoint(request: Request) -> Response:
        raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
        path = raw_path.decode("latin-1").split("?", 1)[0]
        host, port = request.scope.get("server") or ("127.0.0.1", 443)
        scheme = "https" if request.url.scheme == "https" else "http"
        shown_host = url_host(str(host))
        answer = api.handle(
            ApiRequest(
                method=request.method,
                path=path,
                query=dict(request.query_params),
                body=await request.body(),
                authorization=request.headers.get("authorization"),
                base_url=f"{scheme}://{shown_host}:{port}",
            )
        )
        if answer.delay > 0:
            # Hold the answer, but never past shutdown: stop() must not wait for slow faults.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closing_event.wait(), answer.delay)
        headers = dict(answer.headers)
        if answer.html is not None:
            return HTMLResponse(answer.html, status_code=answer.status, headers=headers)
        if answer.status == 204 or answer.body is None:
            return Response(status_code=answer.status, headers=headers)
        return Response(
            json.dumps(answer.body, ensure_ascii=False),
            status_code=answer.status,
            headers=headers,
            media_type=JSON_CONTENT_TYPE,
        )

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=_METHODS)])
