"""Fixtures of the Salesforce plugin's tests: the emulator on loopback and clients trusting it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import requests
from sf_helpers import AdapterFactory
from simple_salesforce import Salesforce

from crmphone.adapters import AdapterContext
from crmphone_salesforce import SalesforceAdapter
from crmphone_salesforce.emulator import SalesforceEmulator, SalesforceEmulatorThread

API_VERSION = "62.0"
"""The API version the tests pin, as the adapter does."""


@pytest.fixture
def salesforce_emulator() -> Iterator[SalesforceEmulatorThread]:
    """A freshly seeded Salesforce emulator (seed 0) serving HTTPS on 127.0.0.1 from a thread."""
    with SalesforceEmulatorThread(seed=0) as emulator:
        yield emulator


@pytest.fixture
def salesforce_emulator_http(
    salesforce_emulator: SalesforceEmulatorThread,
) -> Iterator[requests.Session]:
    """A requests session that trusts the emulator's CA and ignores the environment's CA bundle."""
    session = requests.Session()
    session.verify = str(salesforce_emulator.ca_file)
    session.trust_env = False
    with session:
        yield session


@pytest.fixture
def salesforce_emulator_client(
    salesforce_emulator: SalesforceEmulatorThread, salesforce_emulator_http: requests.Session
) -> Salesforce:
    """Unmodified simple-salesforce on the emulator's fixed session id, API version pinned."""
    return Salesforce(
        instance_url=salesforce_emulator.url,
        session_id=salesforce_emulator.session_id,
        version=API_VERSION,
        session=salesforce_emulator_http,
    )


SECRET_ENV = "SF_TEST_SESSION"
"""The environment variable the adapters' ``session_id_env`` names in these tests."""


@pytest.fixture
async def emulator() -> AsyncIterator[SalesforceEmulator]:
    """The emulator on loopback, in this event loop."""
    async with SalesforceEmulator(seed=0) as running:
        yield running


@pytest.fixture
async def make_adapter(
    emulator: SalesforceEmulator, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AdapterFactory]:
    """Build and start adapters on the emulator; closed at the end of the test."""
    monkeypatch.setenv(SECRET_ENV, emulator.session_id)
    monkeypatch.setenv("SF_CLIENT_ID", emulator.client_id)
    monkeypatch.setenv("SF_CLIENT_SECRET", emulator.client_secret)
    made: list[tuple[SalesforceAdapter, AdapterContext]] = []

    async def make(start: bool = True, **options: Any) -> SalesforceAdapter:
        values: dict[str, Any] = {
            "instance_url": emulator.url,
            "session_id_env": SECRET_ENV,
            "ca_file": str(emulator.ca_file),
            "timeout": 5.0,
        }
        values.update(options)
        values = {key: value for key, value in values.items() if value is not None}
        context = AdapterContext(name="salesforce", agents={}, timeout=5.0)
        adapter = SalesforceAdapter.from_options(values, context)
        made.append((adapter, context))
        if start:
            await adapter.start()
        return adapter

    yield make
    for adapter, context in made:
        await adapter.close()
        context.close()
