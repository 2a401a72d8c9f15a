"""Fixtures for the Zendesk plugin's tests: the emulator on a loopback HTTPS port, and an
unmodified zenpy client (plus the requests session under it) that trusts the emulator's CA."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import requests
from zenpy import Zenpy

from crmphone_zendesk.emulator import ZendeskEmulator


@pytest.fixture
async def zendesk_emulator() -> AsyncIterator[ZendeskEmulator]:
    """A running Zendesk emulator (seed 0) on 127.0.0.1 and a free port."""
    async with ZendeskEmulator(seed=0) as emulator:
        yield emulator


@pytest.fixture
def zendesk_session(zendesk_emulator: ZendeskEmulator) -> Iterator[requests.Session]:
    """A requests session that trusts only the emulator's CA and ignores proxy/CA variables."""
    with requests.Session() as session:
        session.verify = str(zendesk_emulator.ca_file)
        session.trust_env = False
        yield session


@pytest.fixture
def zendesk_zenpy(zendesk_emulator: ZendeskEmulator, zendesk_session: requests.Session) -> Zenpy:
    """Unmodified zenpy against the emulator, API-token auth, a 1-second rate-limit budget
    (so a 429 raises instead of sleeping) and its object cache off."""
    return Zenpy(
        subdomain=zendesk_emulator.subdomain,
        domain=zendesk_emulator.domain,
        email=zendesk_emulator.email,
        token=zendesk_emulator.api_token,
        session=zendesk_session,
        ratelimit_budget=1,
        disable_cache=True,
    )
