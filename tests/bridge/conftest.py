"""Fixtures of the bridge's tests: a token, a recording handler, a running bridge."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from bridge_helpers import RecordingHandler, fast_settings

from crmphone.bridge import BridgeServer, BridgeToken


@pytest.fixture
def token() -> BridgeToken:
    """A fresh in-memory install token."""
    return BridgeToken.generate()


@pytest.fixture
def handler() -> RecordingHandler:
    """A handler that records commands and answers each with its name."""
    return RecordingHandler()


@pytest.fixture
async def bridge(token: BridgeToken, handler: RecordingHandler) -> AsyncIterator[BridgeServer]:
    """A bridge on a free loopback port with the default origins and fast timeouts."""
    async with BridgeServer(fast_settings(token), handler) as server:
        yield server
