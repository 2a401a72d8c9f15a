"""The starlette app: each HTTP request becomes an :class:`~.api.ApiRequest`, its
:class:`~.api.ApiAnswer` becomes the response (after the answer's ``delay``, for ``slow``
faults). Everything else lives in :mod:`.api` and :mod:`.model`.
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .api import ApiRequest, ZendeskApi

__all__ = ["create_app"]

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def create_app(api: ZendeskApi) -> Starlette:
    """An ASGI app answering every path through ``api``."""

    async def endpoint(request: Request) -> Response:
        base_url = f"{request.url.scheme}://{request.url.netloc}"
        answer = api.handle(
            ApiRequest(
                method=request.method,
                path=request.url.path,
                query=dict(request.query_params),
                headers={name.lower(): value for name, value in request.headers.items()},
                body=await request.body(),
                base_url=base_url,
            )
        )
        if answer.delay > 0:
            await asyncio.sleep(answer.delay)
        headers = dict(answer.headers)
        headers["Content-Type"] = answer.content_type
        return Response(content=answer.body, status_code=answer.status, headers=headers)

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=_METHODS)])
