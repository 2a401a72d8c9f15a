"""crmphone-webhook: a crmphone adapter that posts each call log to a webhook as JSON.

Every write of a call log (at connect, at the end, after wrap-up) is one ``POST`` to the
configured ``url`` with the body ``{"event": "call.log", "log": <CallLog.to_json()>}`` and the
header ``Idempotency-Key: <log.write_key>``. The key is the same on every retry of one write and
after a crash, so a receiver that honours it stores each write once however often it arrives.

.. code-block:: toml

    [[adapters]]
    name = "webhook"
    url = "https://hooks.example.com/crmphone"
    timeout = 5.0                                  # optional; default: the adapter's timeout
    [adapters.headers]                             # optional extra headers
    Authorization = "env:WEBHOOK_AUTHORIZATION"    # "env:NAME": read from the environment
    X-Source = "crmphone"

Errors map to crmphone's: no answer (refused, reset, timed out) and HTTP 408, 409, 425, 429 and
5xx are :class:`~crmphone.errors.CrmRetryableError` (with the receiver's ``Retry-After``); every
other error status is :class:`~crmphone.errors.CrmPermanentError`. crmphone's outbox does the
retrying; this adapter never sleeps and has no retry loop.
"""

from __future__ import annotations

import math
import os
import re
import ssl
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar, Self

import attrs
import httpx

from crmphone.adapters import Adapter, AdapterContext, CallLog, crm_error_for_status
from crmphone.errors import ConfigError, CrmRetryableError, InvalidStateError

__all__ = ["EVENT", "WebhookAdapter", "WebhookOptions", "__version__"]

try:
    __version__ = version("crmphone-webhook")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

#: The ``event`` field of every body this adapter posts.
EVENT = "call.log"

_ENV_PREFIX = "env:"
# RFC 9110 token characters: anything else in a header name is refused by HTTP itself.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Headers the adapter writes itself; a configured value would break the body or idempotency.
_RESERVED_HEADERS = frozenset({"content-length", "content-type", "host", "idempotency-key"})
_OPTIONS = ("url", "headers", "timeout")


def _header_names(headers: tuple[tuple[str, str], ...]) -> str:
    # Values may be literal secrets: a repr shows which headers are set, never what they hold.
    return repr(tuple(name for name, _ in headers))


@attrs.frozen
class WebhookOptions:
    """The adapter's validated options: ``url``, extra ``headers`` and ``timeout``.

    ``headers`` holds each header's *configured* value: either the value itself or
    ``env:NAME``, read from the environment when the adapter is built. Build it from a
    configuration table with :meth:`from_options`.
    """

    url: str = attrs.field(repr=lambda url: repr(_safe_url(url)))
    headers: tuple[tuple[str, str], ...] = attrs.field(default=(), repr=_header_names)
    timeout: float | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, prefix: str = "adapters.webhook") -> Self:
        """Validate an ``[[adapters]]`` table's options (everything but ``name``).

        :param prefix: the table's configuration key, for error messages.
        :raises ConfigError: an option is missing, unknown or invalid; ``key`` names it.
        """
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ConfigError(
                f"unknown option {unknown[0]!r}; the webhook adapter takes {', '.join(_OPTIONS)}",
                key=f"{prefix}.{unknown[0]}",
            )
        url = _url(options.get("url"), f"{prefix}.url")
        headers = _headers(options.get("headers", {}), f"{prefix}.headers")
        if httpx.URL(url).userinfo and any(name.lower() == "authorization" for name, _ in headers):
            raise ConfigError(
                "carries credentials (user:password@) while headers set Authorization too; "
                "keep one: the header (with env:NAME) keeps the secret out of the file",
                key=f"{prefix}.url",
            )
        return cls(
            url=url, headers=headers, timeout=_timeout(options.get("timeout"), f"{prefix}.timeout")
        )


class WebhookAdapter(Adapter):
    """Posts each call log as JSON to a webhook, keyed by an ``Idempotency-Key`` header.

    It implements only :meth:`log_call`: a webhook has no caller lookup and no screen to pop.
    One :class:`httpx.AsyncClient` serves every post; :meth:`start` opens it and :meth:`close`
    closes it. ``transport`` replaces the client's network transport (tests, proxies);
    ``environ`` replaces :data:`os.environ` as the source of ``env:NAME`` header values.
    """

    description: ClassVar[str] = (
        "posts each call log as JSON to a webhook URL, with an Idempotency-Key header"
    )

    def __init__(
        self,
        context: AdapterContext,
        options: WebhookOptions,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(context)
        self.options = options
        url = httpx.URL(options.url)
        self._target = _safe_url(options.url)  # what messages and logs show
        # Credentials in the URL become Basic auth, so no request log (httpx logs each request's
        # URL at INFO) ever prints them.
        self._auth = httpx.BasicAuth(url.username, url.password) if url.userinfo else None
        self._post_url = str(url.copy_with(userinfo=b"")) if url.userinfo else options.url
        self.timeout = options.timeout if options.timeout is not None else context.timeout
        prefix = f"adapters.{context.name}"
        # Resolved now, so a missing variable stops the connector at start-up (exit code 2),
        # not at the first call. The values live only here, never in a repr or a message.
        self._headers = _resolve_headers(
            options.headers, os.environ if environ is None else environ, f"{prefix}.headers"
        )
        self._verify_key = f"{prefix}.verify"
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any], context: AdapterContext) -> Self:
        """Build the adapter from its ``[[adapters]]`` options.

        :raises ConfigError: ``url`` is missing or not an http(s) URL, a header or the timeout
            is invalid, an option is unknown, or a header's ``env:NAME`` variable is not set.
        """
        return cls(context, WebhookOptions.from_options(options, prefix=f"adapters.{context.name}"))

    def __repr__(self) -> str:
        return f"<WebhookAdapter {self.context.name!r} posting to {self._target}>"

    async def start(self) -> None:
        """Open the HTTP client (TLS verification as the adapter's ``verify`` setting says)."""
        if self._client is not None:
            return
        self._client = httpx.AsyncClient(
            headers={"User-Agent": f"crmphone-webhook/{__version__}", **self._headers},
            auth=self._auth,
            timeout=httpx.Timeout(self.timeout),
            verify=self._ssl_verify(),
            transport=self._transport,
            # A redirect would turn the POST into a GET on many receivers: report it instead.
            follow_redirects=False,
        )

    async def close(self) -> None:
        """Close the HTTP client and its connections."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def log_call(self, log: CallLog) -> None:
        """POST the call log; return once the receiver answered with a 2xx status.

        :raises CrmRetryableError: no answer (refused, reset, timed out), or a retryable status
            (408, 409, 425, 429, 5xx), with the receiver's ``Retry-After``.
        :raises CrmPermanentError: any other error status.
        """
        client = self._client
        if client is None:
            raise InvalidStateError(
                "the webhook adapter is not started: await adapter.start() before log_call"
            )
        target = self._target
        try:
            response = await client.post(
                self._post_url,
                json={"event": EVENT, "log": log.to_json()},
                headers={"Idempotency-Key": log.write_key},
            )
        except httpx.TimeoutException as exc:
            raise CrmRetryableError(
                f"webhook {target} did not answer within {self.timeout:g} s ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise CrmRetryableError(
                f"cannot reach webhook {target}: {type(exc).__name__}: {exc}"
            ) from exc
        status = response.status_code
        if response.is_success:
            self.context.logger.debug("posted %s to %s: HTTP %d", log.write_key, target, status)
            return
        message = f"webhook {target} refused call log {log.write_key}"
        if status == 409:
            # Idempotency-Key semantics: 409 means a request with this key is still being
            # processed (our earlier attempt, which timed out on our side). Later it succeeds.
            raise CrmRetryableError(
                f"{message}: a request with the same Idempotency-Key is in progress (HTTP 409)"
            )
        if response.is_redirect:
            message += "; it redirects: set url to the address it redirects to"
        elif status in (401, 403):
            message += "; check the credentials in the adapter's headers"
        raise crm_error_for_status(status, message, retry_after=response.headers.get("Retry-After"))

    def _ssl_verify(self) -> ssl.SSLContext | bool:
        verify = self.context.verify
        if not isinstance(verify, str):
            return verify
        # A CA bundle path: httpx deprecates verify=<path>, an SSLContext is the supported way.
        try:
            return ssl.create_default_context(cafile=verify)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot read the CA bundle {verify!r}: {exc}; give the path of a PEM file",
                key=self._verify_key,
            ) from exc


# ---------------------------------------------------------------------------------------------
# Option validation


def _url(value: object, key: str) -> str:
    if value is None:
        raise ConfigError(
            'is missing; set url = "https://…" to the address that receives the call logs',
            key=key,
        )
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"must be an http:// or https:// URL (a string), not {type(value).__name__}", key=key
        )
    text = value.strip()
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise ConfigError(
            f"is not a valid URL ({exc}); write it as https://host/path", key=key
        ) from exc
    if url.scheme not in ("http", "https"):
        shown = url.scheme or "none"
        raise ConfigError(
            f"must start with https:// (or http://), not with scheme {shown!r}", key=key
        )
    if not url.host:
        raise ConfigError("has no host; write it as https://host/path", key=key)
    return text


def _headers(value: object, key: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"must be a table of header names to values, not {type(value).__name__}; write "
            f'[adapters.headers] with lines such as Authorization = "env:WEBHOOK_TOKEN"',
            key=key,
        )
    headers = []
    for name, configured in value.items():
        header_key = f"{key}.{name}"
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ConfigError(
                "is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)",
                key=header_key,
            )
        if name.lower() in _RESERVED_HEADERS:
            raise ConfigError(
                "is set by the webhook adapter itself; remove it from the headers", key=header_key
            )
        if not isinstance(configured, str):
            raise ConfigError(f"must be a string, not {type(configured).__name__}", key=header_key)
        if configured.startswith(_ENV_PREFIX):
            variable = configured.removeprefix(_ENV_PREFIX)
            if not _ENV_NAME.match(variable):
                raise ConfigError(
                    f"env:{variable} does not name an environment variable; write "
                    '"env:NAME" with NAME made of letters, digits and _',
                    key=header_key,
                )
        elif "\r" in configured or "\n" in configured:
            raise ConfigError("must be a single line", key=header_key)
        headers.append((name, configured))
    return tuple(headers)


def _timeout(value: object, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"must be a number of seconds, not {type(value).__name__}", key=key)
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"must be a positive number of seconds, not {value!r}", key=key)
    return float(value)


def _resolve_headers(
    headers: tuple[tuple[str, str], ...], environ: Mapping[str, str], key: str
) -> dict[str, str]:
    resolved = {}
    for name, configured in headers:
        if not configured.startswith(_ENV_PREFIX):
            resolved[name] = configured
            continue
        variable = configured.removeprefix(_ENV_PREFIX)
        value = environ.get(variable, "")
        if not value:
            raise ConfigError(
                f"takes its value from the environment variable {variable}, which is not set "
                f"(or empty); set {variable} before starting crmphone",
                key=f"{key}.{name}",
            )
        if "\r" in value or "\n" in value:
            raise ConfigError(
                f"the environment variable {variable} holds more than one line", key=f"{key}.{name}"
            )
        resolved[name] = value
    return resolved


def _safe_url(url: str) -> str:
    """The URL without credentials, query or fragment: what messages and logs may show."""
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii')}{parsed.path}"
