"""TLS for every connection to the platform: one context for REST, token requests and WebSockets.

``verify`` is what ``[platform] verify`` (and :class:`~crmphone.platform.PlatformClient`'s
argument of that name) says: ``True`` verifies against the default trust store, a string is the
path of a PEM CA bundle to trust *instead* (a proxy's or a private CA), and ``False`` turns
certificate and host name checks off. :func:`ssl_context` turns it into the one
:class:`ssl.SSLContext` httpx and websockets are both given, so the REST calls and the channel's
socket never trust different things.

:func:`certificate_problem` recognises a failed verification under whatever a library wrapped it
in, so errors can say "TLS verification failed" and how to fix it instead of "could not connect".
"""

from __future__ import annotations

import ssl
from typing import Any, Final

from crmphone.errors import ConfigError

__all__ = ["TLS_ADVICE", "Verify", "certificate_problem", "ssl_context", "websocket_tls"]

Verify = bool | str
"""``True`` (the default trust store), a CA bundle's path, or ``False`` (no verification)."""

TLS_ADVICE: Final = (
    "If a proxy or a private CA signs the server's certificate, trust that CA with "
    '[platform] verify = "<path of its PEM CA bundle>"; never turn verification off on a '
    "network you do not own"
)
"""What to do about a certificate the platform client does not trust."""

# Exception chains are short (httpx → httpcore → ssl); the bound only guards against a cycle.
_MAX_CHAIN = 16


def ssl_context(verify: Verify, *, key: str = "platform.verify") -> ssl.SSLContext | None:
    """The client context for ``verify``; None means the libraries' own default (verified).

    A CA bundle that cannot be read raises :class:`~crmphone.errors.ConfigError` naming ``key``.
    """
    if verify is True:
        return None
    if verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # The order matters: CERT_NONE is refused while check_hostname is on.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if not isinstance(verify, str) or not verify:
        raise ConfigError(f"must be true, false or a CA bundle's path, not {verify!r}", key=key)
    try:
        return ssl.create_default_context(cafile=verify)
    except (OSError, ssl.SSLError) as exc:
        reason = (
            getattr(exc, "strerror", None) or getattr(exc, "reason", None) or type(exc).__name__
        )
        raise ConfigError(
            f"cannot use the CA bundle {verify!r} ({reason}); give the path of a PEM file of "
            "CA certificates",
            key=key,
        ) from exc


def websocket_tls(uri: str, context: ssl.SSLContext | None) -> dict[str, Any]:
    """The keyword arguments that give ``websockets.connect`` ``context`` for a ``wss://``
    ``uri`` (nothing for ``ws://``, which websockets refuses an ``ssl`` argument for)."""
    if context is None or not uri.lower().startswith("wss:"):
        return {}
    return {"ssl": context}


def certificate_problem(error: BaseException) -> str | None:
    """Why certificate verification failed, when ``error`` (or what it was raised from) is such
    a failure: ``"self-signed certificate in certificate chain"``; None for any other error."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(seen) < _MAX_CHAIN:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return str(current.verify_message or current.reason or "certificate not trusted")
        current = current.__cause__ or current.__context__
    return None
