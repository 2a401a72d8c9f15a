"""Fixtures shared by the core's tests: a real sandbox on loopback and a client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from crmphone.platform import ClientCredentials, PlatformClient
from crmphone.sandbox import SandboxServer
from crmphone.testing import TEST_CLIENT_ID, TEST_CLIENT_SECRET, fast_sandbox_config


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    """A sandbox platform on a real loopback port, with fast timers."""
    async with SandboxServer(fast_sandbox_config(), host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
async def client(sandbox: SandboxServer) -> AsyncIterator[PlatformClient]:
    """crmphone's platform client, authenticated against the sandbox with client credentials."""
    tokens = ClientCredentials(
        login_base=sandbox.base_url, client_id=TEST_CLIENT_ID, client_secret=TEST_CLIENT_SECRET
    )
    async with PlatformClient(api_base=sandbox.base_url, tokens=tokens) as platform_client:
        yield platform_client
