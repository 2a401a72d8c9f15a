"""What the security tests share: every text an exception can show, the tokens alive in this
process, and one assertion that names where a secret leaked."""

from __future__ import annotations

import gc
import traceback
from collections.abc import Iterable

from crmphone.bridge import BridgeToken
from crmphone.platform import AccessToken
from crmphone.sandbox.world import Token as SandboxToken

# Below this length a "secret" would match by chance (demo ids, short words).
MIN_SECRET_LENGTH = 8


def exception_texts(error: BaseException) -> str:
    """Everything ``error`` and whatever it was raised from or during can show: str, repr, args,
    and the formatted traceback (which prints every chained message)."""
    texts: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args)]
        texts += traceback.format_exception(current)
        pending += [current.__cause__, current.__context__]
    return "\n".join(texts)


def live_tokens() -> set[str]:
    """Every OAuth token and refresh token alive in this process: what the platform clients
    hold (:class:`~crmphone.platform.AccessToken`), what the sandbox issued, the Salesforce
    sessions simple-salesforce holds, and bridge tokens.

    Found through the garbage collector because they live inside token providers of several
    clients (the connector's, each phone's), the sandbox's thread and the CRM libraries:
    reaching each through private attributes would tie the tests to every one of them.
    """
    from simple_salesforce.api import Salesforce

    found: set[str] = set()
    for value in gc.get_objects():
        # type(), not isinstance(): the heap holds weak proxies, which isinstance() would follow
        # into objects that may be gone.
        kind = type(value)
        if issubclass(kind, AccessToken):
            found.add(value.value)
        elif issubclass(kind, SandboxToken):
            found.add(value.value)
            if value.refresh_token:
                found.add(value.refresh_token)
        elif issubclass(kind, Salesforce):
            found.add(str(value.session_id))
        elif issubclass(kind, BridgeToken):
            found.add(value.reveal())
    return {token for token in found if len(token) >= MIN_SECRET_LENGTH}


def live_objects(*kinds: type) -> list[object]:
    """Every object of ``kinds`` (or their subclasses) alive in this process."""
    return [value for value in gc.get_objects() if issubclass(type(value), kinds)]


def leaks(secrets: Iterable[str], text: str | bytes) -> list[str]:
    """The secrets that occur in ``text``, each shortened so a failure message does not print it."""
    haystack = text if isinstance(text, str) else text.decode("utf-8", "replace")
    return [f"{s[:3]}…({len(s)} chars)" for s in secrets if s and s in haystack]


def assert_no_secret(secrets: Iterable[str], text: str | bytes, where: str) -> None:
    """Fail naming ``where`` (and never printing the secret) when a secret occurs in ``text``."""
    found = leaks(secrets, text)
    assert not found, f"secret(s) {', '.join(found)} found in {where}"
