"""crmphone's adapter conformance suite, run against crmphone-webhook and a real receiver.

The suite needs two fixtures: ``adapter`` (a started adapter; conftest.py's) and ``backend``, a
:class:`~crmphone.testing.ConformanceBackend` over the receiver, defined here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from receiver import WebhookReceiver

from crmphone.adapters import LogStage
from crmphone.testing import AdapterConformance, ConformanceBackend
from crmphone.testing.conformance import FailureKind

#: The Retry-After the receiver sends with a retryable failure (HTTP wants whole seconds; the
#: suite's outbox caps the wait, so nothing here waits a second).
RETRY_AFTER = 1


class ReceiverBackend(ConformanceBackend):
    """The webhook receiver seen as a CRM.

    The receiver stores one entry per ``Idempotency-Key``: one per write of a call log. A CRM
    fed by it keeps one record per call log key and updates it with each stored write; a write
    stored twice (under two keys, so the receiver could not tell it was a copy) is a second record.
    """

    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver

    def _stored(self, log_key: str) -> list[dict[str, Any]]:
        """The stored logs of call ``log_key``, in the order they were stored."""
        logs = (body["log"] for body in self.receiver.records.values())
        return [log for log in logs if log["key"] == log_key]

    def records(self, log_key: str) -> int:
        """One record for the call, plus one per write stored more than once."""
        stored = self._stored(log_key)
        copies = len(stored) - len({log["writeKey"] for log in stored})
        return (1 if stored else 0) + copies

    def fail_next(self, kind: FailureKind, count: int = 1) -> float | None:
        """Answer 429 with Retry-After (retryable) or 422 (permanent), storing nothing."""
        if kind == "retryable":
            self.receiver.fail_next(count, status=429, retry_after=str(RETRY_AFTER))
            return float(RETRY_AFTER)
        self.receiver.fail_next(count, status=422)
        return None

    def stall(self, seconds: float) -> None:
        """Make the next request wait ``seconds`` before the receiver processes it."""
        self.receiver.slow_next(seconds=seconds)

    def last_written(self, log_key: str) -> LogStage | None:
        """The stage of the last stored write of the call."""
        stages = self.written_stages(log_key)
        return stages[-1] if stages else None

    def written_stages(self, log_key: str) -> Sequence[LogStage]:
        """The stages of the call's stored writes, in the order they were stored."""
        return [LogStage[str(log["stage"]).upper()] for log in self._stored(log_key)]


@pytest.fixture
def backend(receiver: WebhookReceiver) -> ReceiverBackend:
    """The receiver that conftest.py's ``adapter`` posts to, as the suite's CRM."""
    return ReceiverBackend(receiver)


class TestWebhookConformance(AdapterConformance):
    """The conformance suite against WebhookAdapter (lookup and pop are skipped: it has neither)."""
