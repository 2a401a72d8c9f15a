"""Salesforce's errors as crmphone's: what may work later is retryable, the rest permanent.

Salesforce answers errors as a JSON array ``[{"message", "errorCode", "fields"}]`` (sObject
Collections put the same inside each record's result as ``statusCode``). simple-salesforce raises
one exception class per HTTP status and requests raises its own for the network; this module turns
each into :class:`~crmphone.errors.CrmRetryableError` or :class:`~crmphone.errors.CrmPermanentError`
with a message that says what happened, never the session id and never the library's long repr.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import requests
from simple_salesforce.exceptions import SalesforceError

from crmphone.errors import CrmError, CrmPermanentError, CrmRetryableError

__all__ = [
    "LIMIT_RETRY_AFTER",
    "RETRYABLE_CODES",
    "error_details",
    "from_record_errors",
    "from_salesforce_error",
    "from_transport_error",
]

#: Error codes that mean "not now": the same request may succeed later.
RETRYABLE_CODES = frozenset(
    {
        "REQUEST_LIMIT_EXCEEDED",  # the org's API allowance (or concurrency limit) is spent
        "UNABLE_TO_LOCK_ROW",  # another transaction holds the record
        "SERVER_UNAVAILABLE",
        "TXN_SECURITY_END_SESSION",
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",  # this record was fine; another one failed
    }
)
_MESSAGE_LIMIT = 300
#: The default wait after 403 REQUEST_LIMIT_EXCEEDED: a spent allowance, for which Salesforce
#: sends no Retry-After; the allowance is a rolling 24 h window, so sooner is pointless.
LIMIT_RETRY_AFTER = 300.0


def error_details(content: Any) -> list[tuple[str, str]]:
    """``(errorCode, message)`` pairs from an error body (array, object, or text)."""
    items: Iterable[Any] = content if isinstance(content, list) else [content]
    details: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, dict):
            code = item.get("errorCode") or item.get("statusCode") or item.get("error") or ""
            message = item.get("message") or item.get("error_description") or ""
            fields = item.get("fields")
            if isinstance(fields, list) and fields:
                message = f"{message} (fields: {', '.join(str(f) for f in fields)})"
            details.append((str(code), str(message)))
        elif item:
            details.append(("", str(item)[:_MESSAGE_LIMIT]))
    return details


def _describe(details: list[tuple[str, str]]) -> str:
    text = "; ".join(f"{code}: {message}" if code else message for code, message in details)
    return text[:_MESSAGE_LIMIT] or "no details"


def from_salesforce_error(
    error: SalesforceError,
    *,
    what: str,
    retry_after: float | None = None,
    limit_wait: float = LIMIT_RETRY_AFTER,
) -> CrmError:
    """The crmphone error for a simple-salesforce exception raised while doing ``what``;
    ``retry_after`` is the answer's ``Retry-After`` (seconds) when it had one, ``limit_wait``
    the wait after the org's API allowance is spent."""
    details = error_details(error.content)
    codes = {code for code, _ in details}
    status = int(error.status)
    text = f"Salesforce answered {status} to {what}: {_describe(details)}"
    if status == 401:
        return CrmRetryableError(
            f"{text}. The session expired and could not be renewed: check the adapter's "
            "credentials (a fixed session_id cannot be renewed)"
        )
    if status == 403 and "REQUEST_LIMIT_EXCEEDED" in codes:
        return CrmRetryableError(
            f"{text}. The org's API allowance is spent; writes wait in the outbox",
            retry_after=limit_wait,
        )
    if codes & RETRYABLE_CODES or status >= 500 or status in (408, 429):
        return CrmRetryableError(text, retry_after=retry_after)
    if status == 404 and "NOT_FOUND" in codes and "external" in text.lower():
        return CrmPermanentError(
            f"{text}. Make the adapter's external_id_field an External ID field of the object"
        )
    if status == 300:
        return CrmPermanentError(
            f"{text}. Several records share this call's external id: make the field unique"
        )
    return CrmPermanentError(text)


def from_record_errors(
    errors: Any, *, what: str, limit_wait: float = LIMIT_RETRY_AFTER
) -> CrmError:
    """The crmphone error for one record's ``errors`` in an sObject Collections result."""
    details = error_details(errors if isinstance(errors, list) else [errors])
    codes = {code for code, _ in details}
    text = f"Salesforce refused {what}: {_describe(details)}"
    if codes & RETRYABLE_CODES:
        retry_after = limit_wait if "REQUEST_LIMIT_EXCEEDED" in codes else None
        return CrmRetryableError(text, retry_after=retry_after)
    return CrmPermanentError(text)


def from_transport_error(error: requests.RequestException, *, what: str) -> CrmRetryableError:
    """No usable answer (refused, reset, timed out, TLS): retryable, named without the URL's
    query (which may hold a search term)."""
    kind = type(error).__name__
    if isinstance(error, requests.exceptions.SSLError):
        return CrmRetryableError(
            f"TLS failed while {what} ({kind}): the server's certificate is not trusted; if a "
            'proxy or a private CA signs it, set verify = "<CA bundle>" (or ca_file) on the '
            "adapter's table to trust that CA"
        )
    if isinstance(error, requests.Timeout):
        return CrmRetryableError(f"Salesforce did not answer in time while {what} ({kind})")
    return CrmRetryableError(f"no answer from Salesforce while {what} ({kind})")
