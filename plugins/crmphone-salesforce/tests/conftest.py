"""Fixtures of the Salesforce plugin's tests: the emulator on loopback and clients trusting it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from simple_salesforce import Salesforce

from crmphone_salesforce.emulator import SalesforceEmulatorThread

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
