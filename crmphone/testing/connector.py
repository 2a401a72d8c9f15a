"""Running the connector inside a test, as ``crmphone run`` runs it, for as long as a scenario
takes (:func:`run_connector_until`), or as ``crmphone run`` itself in a child process
(:func:`connector_process`: for SIGKILL, and for measuring the process on its own).

.. code-block:: python

    async def scenario(connector, health, sandbox):
        await sandbox.calls.place_inbound(sandbox.agents[0].id)
        ...  # wait for the CRM to show it

    await run_connector_until(config, scenario, health_port=0)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from crmphone.config import ConnectorConfig
from crmphone.connector import Connector
from crmphone.service import run_connector

__all__ = ["ConnectorProcess", "Scenario", "connector_process", "run_connector_until"]

_FOLLOWING = "crmphone run: following"
_HEALTH_URL = re.compile(r"health on (http://\S+)")

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


@attrs.frozen
class ConnectorProcess:
    """A running ``crmphone run``: the process, its health URL (when it serves one), and the
    last lines it wrote to stderr (kept for error messages)."""

    process: asyncio.subprocess.Process
    health_url: str | None
    lines: collections.deque[str]


@contextlib.asynccontextmanager
async def connector_process(
    config: Path,
    *,
    env: Mapping[str, str] | None = None,
    health_port: int | None = None,
    on_line: Callable[[str], None] | None = None,
    startup_timeout: float = 30.0,
    stop_timeout: float = 15.0,
) -> AsyncIterator[ConnectorProcess]:
    """``crmphone run --config config`` in a child process, yielded once it follows the platform.

    Its stderr is read all along (a full pipe would stall it), each line given to ``on_line``.
    On leaving, a process still running gets SIGTERM, as an operator's stop, and is killed after
    ``stop_timeout``; ``process.returncode`` then says how it ended. A process the caller killed
    meanwhile is left as it is. RuntimeError (with its last lines) when it ends before following.
    """
    command = [sys.executable, "-m", "crmphone", "run", "--config", str(config)]
    if health_port is not None:
        command += ["--health-port", str(health_port)]
    process = await asyncio.create_subprocess_exec(
        *command,
        env=None if env is None else dict(env),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    stderr = process.stderr
    assert stderr is not None
    lines: collections.deque[str] = collections.deque(maxlen=200)

    async def next_line() -> str | None:
        raw = await stderr.readline()
        if not raw:
            return None
        line = raw.decode(errors="replace").rstrip("\n")
        lines.append(line)
        if on_line is not None:
            on_line(line)
        return line

    async def drain() -> None:
        while await next_line() is not None:
            pass

    reading: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(startup_timeout):
            while (line := await next_line()) is not None and _FOLLOWING not in line:
                pass
        if line is None:
            raise RuntimeError(
                "crmphone run exited before it was following the platform; its last lines:\n"
                + "\n".join(lines)
            )
        found = _HEALTH_URL.search(line)
        health_url = None if found is None else found.group(1).rstrip(";,")
        reading = asyncio.create_task(drain(), name="crmphone-connector-stderr")
        yield ConnectorProcess(process, health_url, lines)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(stop_timeout):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        if reading is not None:
            await reading
