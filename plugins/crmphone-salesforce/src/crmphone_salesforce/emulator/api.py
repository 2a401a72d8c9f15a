"""Salesforce's REST surface without sockets: an :class:`ApiRequest` in, an :class:`ApiResponse` out.

:class:`SalesforceApi` routes a request, applies injected faults, checks the session and the
daily allowance, calls the :class:`~.model.SalesforceModel` and shapes the answer as Salesforce
does. The HTTP layer (:mod:`.app`) only converts between starlette and these values and waits
out ``ApiResponse.delay``; tests can drive this class directly.

Routes (``vNN.0`` one of the served versions; any other version is 404 ``NOT_FOUND``):

==========================================================  ======================================
``GET /services/data/``                                     the versions (no session needed)
``POST /services/oauth2/token``                             client credentials, JWT bearer
``GET /services/data/vNN.0/``                               the resources
``GET /services/data/vNN.0/sobjects``                       global describe
``GET|POST .../sobjects/{T}``                               basic info / create (201)
``GET .../sobjects/{T}/describe``                           describe
``GET|PATCH|DELETE .../sobjects/{T}/{id}``                  get / update (204) / delete (204)
``GET|PATCH|DELETE .../sobjects/{T}/{Field}/{value}``       by external id; PATCH upserts (201/200)
``GET .../query?q=``, ``GET .../search?q=``                 SOQL and SOSL subsets
``POST|PATCH|DELETE .../composite/sobjects``                sObject Collections (200, per record)
``PATCH .../composite/sobjects/{T}/{Field}``                collection upsert
``GET .../limits``                                          ``DailyApiRequests``
==========================================================  ======================================

Path segments are split before they are percent-decoded, so an external id value may contain an
encoded ``/``. Every ``/services/data`` answer carries ``Sforce-Limit-Info: api-usage=N/MAX``.
An order of checks, as on Salesforce: unavailable (503) → unknown version (404) → session (401)
→ allowance (403) → the request itself.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote

import attrs

from .errors import ApiError, ErrorItem, OAuthError, invalid_session, not_found
from .faults import Fault, FaultKind, RouteKind
from .model import SalesforceModel, version_label
from .stats import RequestRecord

__all__ = ["LIMIT_HEADER", "ApiRequest", "ApiResponse", "SalesforceApi"]

logger = logging.getLogger(__name__)

LIMIT_HEADER = "Sforce-Limit-Info"
"""The header that reports the daily API usage on every REST answer."""

_VERSION = re.compile(r"^v(\d+\.\d)$")
_DATA = ("services", "data")
_TOKEN = ("services", "oauth2", "token")

# Salesforce's maintenance and outage answers come from its edge as HTML, not as the REST error
# array; a client that insists on JSON for every error must survive this page.
_UNAVAILABLE_PAGE = """<!DOCTYPE html>
<html><head><title>Service Unavailable</title></head>
<body><h1>Service Unavailable</h1>
<p>The server is temporarily unable to service your request due to maintenance downtime or
capacity problems. Please try again later.</p></body></html>
"""

Handler = Callable[["_Call"], "ApiResponse"]


@attrs.frozen
class ApiRequest:
    """One HTTP request as the API sees it.

    ``path`` is the raw (still percent-encoded) path without the query string; ``query`` the
    decoded query parameters; ``base_url`` the emulator's own ``https://host:port`` (the
    ``instance_url`` of tokens, the My Domain audience of JWTs).
    """

    method: str
    path: str
    query: Mapping[str, str] = attrs.field(factory=dict)
    # Neither in reprs: a token request's body carries the client secret.
    body: bytes = attrs.field(default=b"", repr=False)
    authorization: str | None = attrs.field(default=None, repr=False)
    base_url: str = ""


@attrs.frozen
class ApiResponse:
    """The answer: status, JSON ``body`` (or ``html``), extra headers, and how long to hold it."""

    status: int
    body: Any = None
    html: str | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    delay: float = 0.0
    route: RouteKind = RouteKind.OTHER


@attrs.frozen
class _Call:
    """A routed, admitted REST request."""

    request: ApiRequest
    version: str
    segments: tuple[str, ...]
    user_id: str

    def json_body(self) -> Any:
        if not self.request.body.strip():
            raise ApiError(
                400, ErrorItem("The request body is empty: expected JSON", "JSON_PARSER_ERROR")
            )
        try:
            return json.loads(self.request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            # Wording ours; Salesforce quotes Jackson's parser message here.
            raise ApiError(
                400, ErrorItem(f"Unexpected character in the JSON body: {exc}", "JSON_PARSER_ERROR")
            ) from exc


def _json(status: int, body: Any, route: RouteKind) -> ApiResponse:
    return ApiResponse(status, body, route=route)


def _method_not_allowed(method: str, allowed: tuple[str, ...]) -> ApiError:
    shown = ",".join((*allowed, "HEAD") if "GET" in allowed else allowed)
    return ApiError(
        405,
        ErrorItem(f"HTTP Method '{method}' not allowed. Allowed are {shown}", "METHOD_NOT_ALLOWED"),
    )


class SalesforceApi:
    """The REST API of one emulated org."""

    def __init__(self, model: SalesforceModel) -> None:
        self.model = model

    # ------------------------------------------------------------------ entry point

    def handle(self, request: ApiRequest) -> ApiResponse:
        """Answer ``request`` (every outcome is an answer; nothing raises)."""
        segments = tuple(unquote(part) for part in request.path.split("/") if part)
        route = self._classify(request.method, segments)
        fault = self.model.faults.take(route)
        try:
            if segments[:3] == _TOKEN:
                response = self._token(request, fault)
            elif segments[:2] == _DATA:
                response = self._data(request, segments[2:], route, fault)
            else:
                response = _json(404, not_found().to_json(), route)
        except ApiError as exc:
            response = _json(exc.status, exc.to_json(), route)
        except Exception:
            logger.exception(
                "the Salesforce emulator failed on %s %s", request.method, request.path
            )
            body = [{"message": "An unexpected error occurred.", "errorCode": "UNKNOWN_EXCEPTION"}]
            response = _json(500, body, route)
        headers = dict(response.headers)
        if segments[:2] == _DATA:
            headers[LIMIT_HEADER] = self.model.usage.header()
        delay = fault.delay if fault is not None and fault.kind is FaultKind.SLOW else 0.0
        response = attrs.evolve(response, headers=headers, delay=delay, route=route)
        self.model.stats.record(
            RequestRecord(request.method, request.path, route, response.status, self.model.clock())
        )
        return response

    # ------------------------------------------------------------------ routing

    @staticmethod
    def _classify(method: str, segments: tuple[str, ...]) -> RouteKind:
        if segments[:3] == _TOKEN:
            return RouteKind.OAUTH
        if segments[:2] != _DATA:
            return RouteKind.OTHER
        rest = segments[3:]
        if len(segments) == 2:
            return RouteKind.VERSIONS
        if not rest:
            return RouteKind.RESOURCES
        head = rest[0]
        if head == "sobjects":
            if len(rest) == 1 or (len(rest) == 2 and method == "GET") or rest[2:] == ("describe",):
                return RouteKind.DESCRIBE
            if len(rest) == 4 and method == "PATCH":
                return RouteKind.UPSERT
            return RouteKind.SOBJECT
        return {
            "query": RouteKind.QUERY,
            "search": RouteKind.SEARCH,
            "composite": RouteKind.COMPOSITE,
            "limits": RouteKind.LIMITS,
        }.get(head, RouteKind.OTHER)

    def _data(
        self,
        request: ApiRequest,
        segments: tuple[str, ...],
        route: RouteKind,
        fault: Fault | None,
    ) -> ApiResponse:
        if fault is not None and fault.kind is FaultKind.UNAVAILABLE:
            return self._unavailable(fault, route)
        if not segments:
            if request.method != "GET":
                raise _method_not_allowed(request.method, ("GET",))
            return _json(200, self._versions(), route)
        match = _VERSION.match(segments[0])
        if match is None or match.group(1) not in self.model.settings.api_versions:
            raise not_found()
        session = self.model.auth.session_for(request.authorization)
        if session is None or (fault is not None and fault.kind is FaultKind.EXPIRED_SESSION):
            raise invalid_session()
        if (
            fault is not None and fault.kind is FaultKind.REQUEST_LIMIT
        ) or not self.model.usage.try_count():
            raise ApiError(
                403, ErrorItem("TotalRequests Limit exceeded.", "REQUEST_LIMIT_EXCEEDED")
            )
        if fault is not None and fault.kind is FaultKind.REJECTED:
            raise ApiError(
                400,
                ErrorItem(
                    "The record failed a validation rule of this org (injected fault).",
                    "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                ),
            )
        call = _Call(request, match.group(1), segments[1:], session.user_id)
        return self._dispatch(call, route)

    def _dispatch(self, call: _Call, route: RouteKind) -> ApiResponse:
        rest = call.segments
        method = call.request.method
        handler: Handler | None = None
        allowed: tuple[str, ...] = ()
        if not rest:
            handler, allowed = {"GET": self._resources}.get(method), ("GET",)
        elif rest[0] == "sobjects":
            handler, allowed = self._sobjects_route(rest[1:], method)
        elif rest == ("query",):
            handler, allowed = {"GET": self._query}.get(method), ("GET",)
        elif rest == ("search",):
            handler, allowed = {"GET": self._search}.get(method), ("GET",)
        elif rest == ("limits",):
            handler, allowed = {"GET": self._limits}.get(method), ("GET",)
        elif rest == ("composite", "sobjects"):
            handler = {
                "POST": self._collection_create,
                "PATCH": self._collection_update,
                "DELETE": self._collection_delete,
            }.get(method)
            allowed = ("POST", "PATCH", "DELETE")
        elif len(rest) == 4 and rest[:2] == ("composite", "sobjects"):
            handler, allowed = {"PATCH": self._collection_upsert}.get(method), ("PATCH",)
        else:
            raise not_found()
        if handler is None:
            raise _method_not_allowed(method, allowed)
        return attrs.evolve(handler(call), route=route)

    def _sobjects_route(
        self, rest: tuple[str, ...], method: str
    ) -> tuple[Handler | None, tuple[str, ...]]:
        table: dict[str, Handler]
        if not rest:
            table = {"GET": self._global_describe}
        elif len(rest) == 1:
            table = {"GET": self._basic_info, "POST": self._create}
        elif rest[1:] == ("describe",):
            table = {"GET": self._describe}
        elif len(rest) == 2:
            table = {"GET": self._get, "PATCH": self._update, "DELETE": self._delete}
        elif len(rest) == 3:
            table = {
                "GET": self._get_by_external_id,
                "PATCH": self._upsert,
                "DELETE": self._delete_by_external_id,
            }
        else:
            raise not_found()
        return table.get(method), tuple(table)

    # ------------------------------------------------------------------ unauthenticated

    def _versions(self) -> list[dict[str, str]]:
        return [
            {"label": version_label(v), "url": f"/services/data/v{v}", "version": v}
            for v in self.model.settings.api_versions
        ]

    def _token(self, request: ApiRequest, fault: Fault | None) -> ApiResponse:
        if fault is not None and fault.kind is FaultKind.UNAVAILABLE:
            return self._unavailable(fault, RouteKind.OAUTH)
        if request.method != "POST":
            raise _method_not_allowed(request.method, ("POST",))
        try:
            form = dict(parse_qsl(request.body.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            form = {}
        try:
            answer = self.model.auth.grant(
                form, request.authorization, instance_url=request.base_url
            )
        except OAuthError as exc:
            return _json(exc.status, exc.to_json(), RouteKind.OAUTH)
        return _json(200, answer, RouteKind.OAUTH)

    @staticmethod
    def _unavailable(fault: Fault, route: RouteKind) -> ApiResponse:
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        return ApiResponse(503, html=_UNAVAILABLE_PAGE, headers=headers, route=route)

    # ------------------------------------------------------------------ handlers

    def _resources(self, call: _Call) -> ApiResponse:
        base = f"/services/data/v{call.version}"
        names = ("sobjects", "query", "search", "composite", "limits")
        return _json(200, {name: f"{base}/{name}" for name in names}, RouteKind.RESOURCES)

    def _global_describe(self, call: _Call) -> ApiResponse:
        return _json(200, self.model.global_describe(call.version), RouteKind.DESCRIBE)

    def _basic_info(self, call: _Call) -> ApiResponse:
        spec = self.model.spec(call.segments[1])
        return _json(
            200,
            {"objectDescribe": spec.summary(call.version), "recentItems": []},
            RouteKind.DESCRIBE,
        )

    def _describe(self, call: _Call) -> ApiResponse:
        spec = self.model.spec(call.segments[1])
        return _json(200, spec.describe(call.version), RouteKind.DESCRIBE)

    def _create(self, call: _Call) -> ApiResponse:
        record_id = self.model.create(call.segments[1], call.json_body(), user_id=call.user_id)
        return _json(201, {"id": record_id, "success": True, "errors": []}, RouteKind.SOBJECT)

    def _get(self, call: _Call) -> ApiResponse:
        record = self.model.retrieve(call.segments[1], call.segments[2])
        return _json(200, self._render(call, record), RouteKind.SOBJECT)

    def _update(self, call: _Call) -> ApiResponse:
        self.model.update(
            call.segments[1], call.segments[2], call.json_body(), user_id=call.user_id
        )
        return ApiResponse(204, route=RouteKind.SOBJECT)

    def _delete(self, call: _Call) -> ApiResponse:
        self.model.delete(call.segments[1], call.segments[2])
        return ApiResponse(204, route=RouteKind.SOBJECT)

    def _get_by_external_id(self, call: _Call) -> ApiResponse:
        _, sobject, field, value = call.segments
        record = self.model.retrieve_by_external_id(sobject, field, value, version=call.version)
        return _json(200, self._render(call, record), RouteKind.SOBJECT)

    def _delete_by_external_id(self, call: _Call) -> ApiResponse:
        _, sobject, field, value = call.segments
        record = self.model.retrieve_by_external_id(sobject, field, value, version=call.version)
        self.model.delete(record.sobject, record.id)
        return ApiResponse(204, route=RouteKind.SOBJECT)

    def _upsert(self, call: _Call) -> ApiResponse:
        _, sobject, field, value = call.segments
        record_id, created = self.model.upsert(
            sobject, field, value, call.json_body(), user_id=call.user_id, version=call.version
        )
        body = {"id": record_id, "success": True, "errors": [], "created": created}
        return _json(201 if created else 200, body, RouteKind.UPSERT)

    def _query(self, call: _Call) -> ApiResponse:
        text = call.request.query.get("q")
        if not text:
            raise ApiError(400, ErrorItem("A query string has to be specified", "MALFORMED_QUERY"))
        return _json(200, self.model.query(text, version=call.version), RouteKind.QUERY)

    def _search(self, call: _Call) -> ApiResponse:
        text = call.request.query.get("q")
        if not text:
            raise ApiError(
                400, ErrorItem("A search string has to be specified", "MALFORMED_SEARCH")
            )
        return _json(200, self.model.search(text, version=call.version), RouteKind.SEARCH)

    def _limits(self, call: _Call) -> ApiResponse:
        return _json(200, self.model.limits(), RouteKind.LIMITS)

    def _collection_create(self, call: _Call) -> ApiResponse:
        results = self.model.collection_create(call.json_body(), user_id=call.user_id)
        return _json(200, results, RouteKind.COMPOSITE)

    def _collection_update(self, call: _Call) -> ApiResponse:
        results = self.model.collection_update(call.json_body(), user_id=call.user_id)
        return _json(200, results, RouteKind.COMPOSITE)

    def _collection_upsert(self, call: _Call) -> ApiResponse:
        _, _, sobject, field = call.segments
        results = self.model.collection_upsert(
            sobject, field, call.json_body(), user_id=call.user_id
        )
        return _json(200, results, RouteKind.COMPOSITE)

    def _collection_delete(self, call: _Call) -> ApiResponse:
        ids = [part for part in call.request.query.get("ids", "").split(",") if part]
        all_or_none = call.request.query.get("allOrNone", "false").lower() == "true"
        results = self.model.collection_delete(ids, all_or_none=all_or_none)
        return _json(200, results, RouteKind.COMPOSITE)

    def _render(self, call: _Call, record: Any) -> dict[str, Any]:
        wanted = call.request.query.get("fields")
        if not wanted:
            return self.model.render(record, call.version)
        spec = self.model.schema[record.sobject]
        names = []
        for name in wanted.split(","):
            field = spec.field(name.strip())
            if field is None:
                raise ApiError(
                    400,
                    ErrorItem(
                        f"No such column '{name.strip()}' on sobject of type {spec.name}",
                        "INVALID_FIELD",
                    ),
                )
            names.append(field.name)
        return self.model.render(record, call.version, ["Id", *[n for n in names if n != "Id"]])
