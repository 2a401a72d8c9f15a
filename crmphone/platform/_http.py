"""Sending one HTTP request with retries: the single asyncio loop around :class:`RetryPolicy`.

Both the REST client and the token providers send through :func:`send_with_retries`, so there is
one retry loop in the package. It returns the last response, whatever its status (mapping statuses
to errors is the caller's business), and raises :class:`~crmphone.errors.TransportError` when no
response could be had (at once, without retrying, when the server's certificate is not trusted).
httpx's exceptions never escape it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from crmphone.clock import Clock
from crmphone.errors import PlatformError, TransportError

from ._tls import TLS_ADVICE, certificate_problem
from .retry import IDEMPOTENT_METHODS, RetryPolicy

__all__ = ["Sleep", "describe_transport_error", "read_json", "send_with_retries"]

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


async def send_with_retries(
    send: Callable[[], Awaitable[httpx.Response]],
    *,
    method: str,
    path: str,
    host: str,
    policy: RetryPolicy,
    clock: Clock,
    sleep: Sleep,
    rng: random.Random,
) -> tuple[httpx.Response, int]:
    """Call ``send`` until its response is final or the policy gives up; return it and the attempts.

    ``send`` builds and sends the request afresh each time (so it may pick up a new token).
    ``method`` and ``path`` name the request in logs and errors (never headers or bodies); ``host``
    names where it went. Raises :class:`TransportError` (chained) when the last attempt got no
    response.
    """
    idempotent = method.upper() in IDEMPOTENT_METHODS
    started = clock.monotonic()
    attempt = 0
    while True:
        attempt += 1
        sent_at = clock.monotonic()
        try:
            response = await send()
        except httpx.TransportError as exc:
            elapsed = clock.monotonic() - started
            logger.debug(
                "%s %s -> %s after %.1f ms", method, path, type(exc).__name__, _ms(clock, sent_at)
            )
            problem = certificate_problem(exc)
            if problem is not None:
                # An untrusted certificate does not heal in seconds: retrying only hides it.
                raise TransportError(
                    f"{method} {path}: TLS verification failed for {host}: {problem}; the "
                    f"server's certificate is not trusted, so nothing was sent. {TLS_ADVICE}."
                ) from exc
            delay = policy.decide(
                attempt, None, None, elapsed, rng=rng, idempotent=idempotent, now=clock.wall()
            )
            if delay is None:
                raise TransportError(
                    f"{method} {path}: no response from {host} after {attempt} attempt(s): "
                    f"{describe_transport_error(exc)}. "
                    + (
                        "Check network access to the platform's API host (proxy, firewall, DNS) "
                        "and that the region is right."
                        if idempotent
                        else "It was not retried because the platform may already have acted on "
                        "it; check the platform's state before trying again."
                    )
                ) from exc
            logger.info(
                "%s %s: %s; retrying in %.2f s (attempt %d of %d)",
                method,
                path,
                type(exc).__name__,
                delay,
                attempt + 1,
                policy.max_attempts,
            )
            await sleep(delay)
            continue
        logger.debug(
            "%s %s -> %d in %.1f ms", method, path, response.status_code, _ms(clock, sent_at)
        )
        if response.is_success:
            return response, attempt
        delay = policy.decide(
            attempt,
            response.status_code,
            response.headers.get("Retry-After"),
            clock.monotonic() - started,
            rng=rng,
            idempotent=idempotent,
            now=clock.wall(),
        )
        if delay is None:
            return response, attempt
        logger.info(
            "%s %s -> %d; retrying in %.2f s (attempt %d of %d)",
            method,
            path,
            response.status_code,
            delay,
            attempt + 1,
            policy.max_attempts,
        )
        await response.aclose()
        await sleep(delay)


def describe_transport_error(exc: httpx.TransportError) -> str:
    """A short, secret-free description of an httpx transport failure for an error message."""
    problem = certificate_problem(exc)
    if problem is not None:
        return f"TLS verification failed ({problem})"
    if isinstance(exc, httpx.TimeoutException):
        kind = "timed out"
    elif isinstance(exc, httpx.ConnectError):
        kind = "could not connect"
    else:
        kind = "connection failed"
    detail = str(exc).strip()
    return f"{kind} ({type(exc).__name__}{': ' + detail if detail else ''})"


def read_json(response: httpx.Response, what: str) -> Any:
    """Parse a response body as JSON or raise a clear error naming ``what`` ("GET /api/v2/users").

    Raises :class:`~crmphone.errors.PlatformError` (never ``JSONDecodeError``) when the body is
    empty or not JSON — usually a proxy or captive portal answering instead of the platform.
    """
    content_type = response.headers.get("Content-Type", "unknown content type")
    try:
        return response.json()
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise PlatformError(
            f"{what}: the platform answered {response.status_code} with a body that is not JSON "
            f"({content_type}, {len(response.content)} bytes). Check that the API base URL points "
            "at the platform and not at a proxy or login page.",
            status=response.status_code,
            correlation_id=response.headers.get("ININ-Correlation-Id"),
        ) from exc


def _ms(clock: Clock, since: float) -> float:
    return (clock.monotonic() - since) * 1000.0
