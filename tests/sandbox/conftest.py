"""Fixtures of the sandbox's own tests: a sandbox on loopback and a raw HTTP client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sandbox_helpers import Api, fast_config

from crmphone.sandbox import SandboxServer


@pytest.fixture
async def server() -> AsyncIterator[SandboxServer]:
    """A sandbox with fast timers on a real loopback port."""
    async with SandboxServer(fast_config(), host="127.0.0.1", port=0) as running:
        yield running


@pytest.fixture
async def api(server: SandboxServer) -> AsyncIterator[Api]:
    """Raw httpx access to ``server``."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5.0) as http:
        yield Api(http, server)
