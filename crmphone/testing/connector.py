"""Running the connector inside a test, as ``crmphone run`` runs it, for as long as a scenario
takes.

.. code-block:: python

    async def scenario(connector, health, sandbox):
        await sandbox.calls.place_inbound(sandbox.agents[0].id)
        ...  # wait for the CRM to show it

    await run_connector_until(config, scenario, health_port=0)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from crmphone.config import ConnectorConfig
from crmphone.connector import Connector
from crmphone.service import run_connector

__all__ = ["Scenario", "run_connector_until"]

#: ``scenario(connector, health_server_or_None, sandbox_or_None)``, played once the connector is up.
Scenario = Callable[[Connector, Any, Any], Awaitable[None]]


async def run_connector_until(
    config: ConnectorConfig, scenario: Scenario, *, within: float = 45.0, **options: Any
) -> None:
    """Run the connector of ``config``; once it is ready play ``scenario``, then stop and drain
    (also when the scenario fails, whose error then propagates). ``options`` go to
    :func:`~crmphone.service.run_connector` (``adapters``, ``dialer``, ``health_port``…); the
    whole run is bounded by ``within`` seconds."""
    stop = asyncio.Event()

    async def play(connector: Connector, health: Any, sandbox: Any) -> None:
        try:
            await scenario(connector, health, sandbox)
        finally:
            stop.set()

    async with asyncio.timeout(within):
        await run_connector(config, stop=stop, on_ready=play, **options)
