"""crmphone's adapter conformance suite, run against SalesforceAdapter on the emulator."""

from __future__ import annotations

from typing import Any

import pytest
from sf_helpers import AdapterFactory

from crmphone.adapters import LogStage
from crmphone.testing import AdapterConformance, ConformanceBackend
from crmphone.testing.conformance import FailureKind
from crmphone_salesforce import SalesforceAdapter
from crmphone_salesforce.emulator import SalesforceEmulator

RETRY_AFTER = 2


class EmulatorBackend(ConformanceBackend):
    """The emulated org as the suite's CRM: Tasks keyed by the external id field."""

    def __init__(self, emulator: SalesforceEmulator) -> None:
        self.emulator = emulator

    def _tasks(self, log_key: str) -> list[dict[str, Any]]:
        return self.emulator.model.find("Task", CTI_Call_Id__c=log_key)

    def records(self, log_key: str) -> int:
        """Tasks whose external id is the call's key."""
        return len(self._tasks(log_key))

    def fail_next(self, kind: FailureKind, count: int = 1) -> float | None:
        """503 with Retry-After (retryable) or a validation rule's 400 (permanent)."""
        if kind == "retryable":
            self.emulator.model.faults.fail_next("unavailable", count, retry_after=RETRY_AFTER)
            return float(RETRY_AFTER)
        self.emulator.model.faults.fail_next("rejected", count)
        return None

    def stall(self, seconds: float) -> None:
        """The next answer leaves ``seconds`` late."""
        self.emulator.model.faults.fail_next("slow", 1, delay=seconds)

    def last_written(self, log_key: str) -> LogStage | None:
        """In Progress → CONNECTED; Completed → ENDED, or WRAPPED_UP once a disposition is set."""
        tasks = self._tasks(log_key)
        if len(tasks) != 1:
            return None
        task = tasks[0]
        if task.get("Status") == "In Progress":
            return LogStage.CONNECTED
        return LogStage.WRAPPED_UP if task.get("CallDisposition") else LogStage.ENDED


@pytest.fixture
async def adapter(make_adapter: AdapterFactory) -> SalesforceAdapter:
    """A started adapter on the emulator's session id, trusting its CA."""
    return await make_adapter()


@pytest.fixture
def backend(emulator: SalesforceEmulator) -> EmulatorBackend:
    """The emulator seen by the suite."""
    return EmulatorBackend(emulator)


class TestSalesforceConformance(AdapterConformance):
    """The conformance suite against SalesforceAdapter and the Salesforce emulator."""

    customer_number = "+15550100001"  # one seeded contact
    stall_seconds = 0.5
