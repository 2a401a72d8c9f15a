"""The one exception tree of crmphone.

Every error crmphone raises derives from :class:`CrmphoneError`. Errors of third-party libraries
(httpx, websockets, aiortc, simple-salesforce, zenpy) are mapped at the boundary where they occur and
chained with ``raise … from``, so callers never need to catch a foreign exception type.

Two branches tell the caller whose fault it was: :class:`UsageError` is *local* misuse (bad
configuration, a call in the wrong state) that retrying cannot fix; :class:`RemoteError` is a failure
of something we talk to (the platform, a CRM, the network).

.. code-block:: text

    CrmphoneError
    ├── StorageError                crmphone's own file cannot be written: read-only, full, gone
    ├── UsageError                  local misuse: fix the code or the configuration
    │   ├── ConfigError             a setting is missing or invalid (names the key)
    │   │   └── PluginError             an adapter plugin is missing, not allowed, or broken
    │   ├── InvalidStateError       an operation is illegal in the current state
    │   ├── bridge.CommandError     a page's command is malformed or refused (has a stable code)
    │   └── bridge.UnauthenticatedError  a page did not prove it holds the bridge token
    └── RemoteError                 a peer or the network failed
        ├── TransportError          no HTTP answer: connection refused, reset, timed out, TLS
        ├── PlatformError           the platform answered with an error status
        │   ├── BadRequestError         400: the request is wrong; do not retry
        │   ├── AuthenticationError     401 (after one token refresh) or rejected credentials
        │   ├── PermissionDeniedError   403: the OAuth client lacks a permission or scope
        │   ├── NotFoundError           404: the resource does not exist (any more)
        │   ├── RateLimitedError        429 after the retry budget was spent (has retry_after)
        │   └── ServerError             5xx after the retry budget was spent
        ├── ChannelError            the notification channel cannot go on
        │   ├── ChannelLimitError       topics or channels beyond the platform's limits
        │   └── SubscriptionError       the platform rejected topics (lists them and why)
        └── CrmError                a CRM failed (what adapters raise)
            ├── CrmRetryableError       may succeed later (has retry_after): the outbox retries
            └── CrmPermanentError       will fail again as it is: the write goes to dead letters

A :class:`StorageError` is neither: the local disk failed under a correct configuration. The outbox
holds its events and retries until the disk takes writes again.

Messages say what happened and what to do. They never contain secrets (tokens, client secrets).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ChannelError",
    "ChannelLimitError",
    "ConfigError",
    "CrmError",
    "CrmPermanentError",
    "CrmRetryableError",
    "CrmphoneError",
    "InvalidStateError",
    "NotFoundError",
    "PermissionDeniedError",
    "PlatformError",
    "PluginError",
    "RateLimitedError",
    "RemoteError",
    "ServerError",
    "StorageError",
    "SubscriptionError",
    "TransportError",
    "UsageError",
]


class CrmphoneError(Exception):
    """Root of every error crmphone raises."""


class UsageError(CrmphoneError):
    """Local misuse: the caller's code or configuration must change; retrying will not help."""


class ConfigError(UsageError):
    """A setting is missing or invalid.

    ``key`` names the setting (for example ``platform.client_id``) so the message can say which.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


class PluginError(ConfigError):
    """An adapter plugin named in the configuration is not installed, not allowed, or broken.

    ``plugin`` is the entry-point name; the message says which of the three it is and the fix.
    """

    def __init__(self, message: str, *, plugin: str, key: str | None = None) -> None:
        super().__init__(message, key=key)
        self.plugin = plugin


class InvalidStateError(UsageError):
    """An operation was attempted in a state that does not allow it."""


class StorageError(CrmphoneError):
    """A file crmphone keeps (the outbox) cannot be written: the disk is read-only or full, or
    the file was removed. Nothing is lost: what could not be stored is held and retried."""


class RemoteError(CrmphoneError):
    """Something we talk to (platform, CRM, network) failed."""


class TransportError(RemoteError):
    """No usable answer arrived: the connection failed, was reset, timed out, or TLS failed."""


class PlatformError(RemoteError):
    """The platform answered with an error status.

    ``status`` is the HTTP status, ``code`` the platform's error code when it gave one,
    ``correlation_id`` the id to quote to the platform's support, ``retry_after`` seconds the
    platform asked us to wait (429/503), when it said.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        correlation_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.correlation_id = correlation_id
        self.retry_after = retry_after


class BadRequestError(PlatformError):
    """400: the platform rejected the request as malformed; retrying it unchanged cannot succeed."""


class AuthenticationError(PlatformError):
    """Credentials were rejected, or a request stayed 401 after one token refresh."""


class PermissionDeniedError(PlatformError):
    """403: the OAuth client or user lacks a permission, role or scope for this request."""


class NotFoundError(PlatformError):
    """404: the resource does not exist, or no longer does."""


class RateLimitedError(PlatformError):
    """429 persisted after the retry budget was spent; ``retry_after`` says how long to wait."""


class ServerError(PlatformError):
    """5xx persisted after the retry budget was spent."""


class ChannelError(RemoteError):
    """The notification channel cannot go on (beyond what reconnecting can mend)."""


class ChannelLimitError(ChannelError):
    """The requested topics need more channels than the platform allows per user (20)."""


class SubscriptionError(ChannelError):
    """The platform rejected one or more topics.

    ``rejected`` maps each rejected topic to the reason and missing permissions the platform gave.
    """

    def __init__(self, message: str, *, rejected: Sequence[tuple[str, str, Sequence[str]]]) -> None:
        super().__init__(message)
        self.rejected = tuple((topic, reason, tuple(perms)) for topic, reason, perms in rejected)


class CrmError(RemoteError):
    """A CRM failed.

    Adapters raise one of the two kinds below; anything else an adapter raises is treated as
    retryable and logged as an adapter bug to fix.
    """


class CrmRetryableError(CrmError):
    """The CRM may accept the same write later: rate limited, unavailable, timed out.

    ``retry_after`` is the delay in seconds the CRM asked for (``Retry-After``), when it said; the
    outbox waits at least that long before the next attempt.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        if retry_after is not None and retry_after < 0:
            raise ValueError(f"retry_after must be >= 0 seconds, not {retry_after!r}")
        self.retry_after = retry_after


class CrmPermanentError(CrmError):
    """The CRM will refuse this write again as it is: the write goes to the dead letters.

    Invalid data, a missing permission, an unknown record: retrying cannot help, so a person
    looks at it (``crmphone outbox list``) and replays it once the cause is fixed.
    """
