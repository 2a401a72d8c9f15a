"""Where Task cannot carry an External ID: the call is keyed by a custom object (CTI_Call__c),
and its Task is found by an exact SOQL match, never duplicated. Conformance suite included."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from sf_helpers import AdapterFactory
from test_sf_adapter_conformance import EmulatorBackend

from crmphone.adapters import AdapterContext, LogStage
from crmphone.errors import CrmRetryableError
from crmphone.testing import AdapterConformance, fake_call_logs
from crmphone_salesforce import SalesforceAdapter
from crmphone_salesforce.emulator import ONE_MATCH_NUMBER, SalesforceEmulator


class CallObjectBackend(EmulatorBackend):
    """The org as the suite's CRM when calls are keyed by CTI_Call__c: a call's records are the
    Tasks whose CallObject is its key (each must be one, as must its call object)."""

    def _tasks(self, log_key: str) -> list[dict[str, Any]]:
        return self.emulator.model.find("Task", CallObject=log_key)

    def records(self, log_key: str) -> int:
        """Tasks of the call, plus any second call object."""
        objects = self.emulator.model.find("CTI_Call__c", Call_Id__c=log_key)
        return len(self._tasks(log_key)) + max(0, len(objects) - 1)


@pytest.fixture
async def adapter(make_adapter: AdapterFactory) -> SalesforceAdapter:
    """A started adapter keyed by the custom call object."""
    return await make_adapter(call_object="CTI_Call__c")


@pytest.fixture
def backend(emulator: SalesforceEmulator) -> CallObjectBackend:
    """The emulator seen by the suite."""
    return CallObjectBackend(emulator)


class TestSalesforceCallObjectConformance(AdapterConformance):
    """The conformance suite with calls keyed by the CTI_Call__c custom object."""

    customer_number = ONE_MATCH_NUMBER
    stall_seconds = 0.5


async def test_a_lost_answer_to_the_create_never_makes_a_second_task(
    adapter: SalesforceAdapter, emulator: SalesforceEmulator
) -> None:
    """The Task is created but the answer times out; the retry finds it by CallObject."""
    logs = fake_call_logs(number=ONE_MATCH_NUMBER)
    connected = logs[LogStage.CONNECTED]
    impatient = SalesforceAdapter(
        AdapterContext(name="salesforce", agents={}, timeout=5.0),
        attrs.evolve(adapter.settings, timeout=0.3),
    )
    emulator.model.faults.fail_next("slow", delay=1.0, route="sobject")
    try:
        with pytest.raises(CrmRetryableError, match="in time"):
            await impatient.log_call(connected)
    finally:
        await impatient.close()
    fresh = SalesforceAdapter(
        AdapterContext(name="salesforce", agents={}, timeout=5.0), adapter.settings
    )  # a restarted process: nothing remembered
    try:
        for stage in (LogStage.CONNECTED, LogStage.WRAPPED_UP):
            await fresh.log_call(logs[stage])
    finally:
        await fresh.close()
    [task] = emulator.model.find("Task", CallObject=connected.key)
    [call] = emulator.model.find("CTI_Call__c", Call_Id__c=connected.key)
    assert call["Task_Id__c"] == task["Id"]
    assert task["Status"] == "Completed"
    assert call["Duration__c"] == 42
