"""The errors the emulated Salesforce answers with, as values and as exceptions.

Salesforce's REST API answers an error with a JSON array of ``{"message", "errorCode",
"fields"}`` objects; inside an sObject Collections result the same error is spelled
``{"statusCode", "message", "fields"}``. :class:`ErrorItem` is one such error and renders both.
:class:`ApiError` carries an HTTP status and the items (or, for 300, the list of record URLs); the
model raises it and the HTTP layer turns it into the answer. :class:`OAuthError` is the token
endpoint's ``{"error", "error_description"}``. Both derive from crmphone's
:class:`~crmphone.errors.PlatformError`: to a caller of the model they are the remote side
refusing.

Messages follow Salesforce's wording where it is known (see each constructor); where it is not,
the wording is ours and says so in a comment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from crmphone.errors import PlatformError

__all__ = [
    "RESOURCE_NOT_FOUND",
    "ApiError",
    "ErrorItem",
    "OAuthError",
    "invalid_session",
    "not_found",
]

RESOURCE_NOT_FOUND = "The requested resource does not exist"
"""Salesforce's message for an unknown path, object, record or API version."""


@attrs.frozen
class ErrorItem:
    """One Salesforce error: a message, an error code and (when Salesforce names them) fields.

    ``fields`` None leaves the key out, as Salesforce does for request-level errors such as
    ``INVALID_SESSION_ID`` or ``JSON_PARSER_ERROR``.
    """

    message: str
    error_code: str
    fields: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """The REST error-array form: ``{"message", "errorCode", "fields"?}``."""
        body: dict[str, Any] = {"message": self.message, "errorCode": self.error_code}
        if self.fields is not None:
            body["fields"] = list(self.fields)
        return body

    def to_result_json(self) -> dict[str, Any]:
        """The sObject Collections form: ``{"statusCode", "message", "fields"}``."""
        return {
            "statusCode": self.error_code,
            "message": self.message,
            "fields": list(self.fields or ()),
        }


class ApiError(PlatformError):
    """An error answer of the REST API: ``status`` and the :class:`ErrorItem` list.

    ``body``, when given, replaces the error array (300 answers list the matching records' URLs).
    """

    def __init__(
        self,
        status: int,
        errors: ErrorItem | Sequence[ErrorItem],
        *,
        body: Any = None,
    ) -> None:
        items = (errors,) if isinstance(errors, ErrorItem) else tuple(errors)
        if not items:
            raise ValueError("an ApiError needs at least one ErrorItem")
        super().__init__(items[0].message, status=status, code=items[0].error_code)
        self.status: int = status
        self.errors = items
        self.body = body

    def to_json(self) -> Any:
        """The JSON body Salesforce would answer with."""
        if self.body is not None:
            return self.body
        return [item.to_json() for item in self.errors]


class OAuthError(PlatformError):
    """A refused token request: ``{"error": error, "error_description": description}``."""

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(f"{error}: {description}", status=status, code=error)
        self.status: int = status
        self.error = error
        self.description = description

    def to_json(self) -> dict[str, str]:
        """The token endpoint's JSON error body."""
        return {"error": self.error, "error_description": self.description}


def not_found(message: str = RESOURCE_NOT_FOUND) -> ApiError:
    """404 ``NOT_FOUND``: an unknown path, object type, record or API version."""
    return ApiError(404, ErrorItem(message, "NOT_FOUND"))


def invalid_session() -> ApiError:
    """401 ``INVALID_SESSION_ID``: no token, an unknown one, or an expired one."""
    return ApiError(401, ErrorItem("Session expired or invalid", "INVALID_SESSION_ID"))
