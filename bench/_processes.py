"""The processes benchmarks run beside their own: a sandbox platform and a ``crmphone run``.

Each runs in a child process, so what it costs (CPU, memory) is its own and can be read from
``/proc/<pid>``, and a benchmark measures the product as users run it, not a copy in-process.

* :func:`sandbox_process` — a sandbox with the given :class:`~crmphone.sandbox.SandboxConfig`
  values; yields its base URL (:func:`sandbox_child` yields a :class:`Child`, with the pid).
* :func:`connector_child` — ``crmphone run --config … --health-port 0``; yields a
  :class:`Child` whose URL is the health server's (``/metrics``). Stopped with SIGTERM, as an
  operator would, and it must exit 0.
* :func:`cpu_seconds` reads any process's CPU time (Linux ``/proc``), with the code of the
  connector's ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs

from crmphone.health import _ProcessFigures
from crmphone.testing.connector import connector_process

CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-secret"
STARTUP_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0

_SANDBOX_MAIN = """
import asyncio, json, sys
from crmphone.sandbox import SandboxConfig, serve
config = SandboxConfig(**json.loads(sys.argv[1]))
def ready(server):
    print(server.port, flush=True)
asyncio.run(serve(config, on_ready=ready))
"""


@attrs.frozen
class Child:
    """A process a benchmark started: its pid and the URL it serves."""

    pid: int
    url: str


@contextlib.asynccontextmanager
async def sandbox_child(**config: Any) -> AsyncIterator[Child]:
    """A sandbox in another process (``config``: SandboxConfig values over bench defaults)."""
    values = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "heartbeat_interval": 5.0,
        "rate_limit_per_minute": 0,
        "talk_seconds": 0.3,
        "wrapup_seconds": 0.05,
        "alerting_timeout": 10.0,
    }
    values.update(config)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SANDBOX_MAIN, json.dumps(values), stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        port = int((await asyncio.wait_for(process.stdout.readline(), 30)).decode())
        yield Child(process.pid, f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        await process.wait()


@contextlib.asynccontextmanager
async def sandbox_process(**config: Any) -> AsyncIterator[str]:
    """A sandbox in another process; yields its base URL."""
    async with sandbox_child(**config) as child:
        yield child.url


@contextlib.asynccontextmanager
async def connector_child(
    config: Path, *, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET
) -> AsyncIterator[Child]:
    """``crmphone run --config config --health-port 0``, following once this yields.

    Stopped with SIGTERM on leaving; RuntimeError, with its last lines, when it fails to start,
    serves no health URL, or does not exit 0.
    """
    environment = dict(
        os.environ, CRMPHONE_CLIENT_ID=client_id, CRMPHONE_CLIENT_SECRET=client_secret
    )
    async with connector_process(
        config,
        env=environment,
        health_port=0,
        startup_timeout=STARTUP_TIMEOUT,
        stop_timeout=STOP_TIMEOUT,
    ) as child:
        if child.health_url is None:
            raise RuntimeError("crmphone run announced no health URL")
        yield Child(child.process.pid, child.health_url)
    if child.process.returncode != 0:
        lines = "\n".join(child.lines)
        raise RuntimeError(
            f"crmphone run exited with {child.process.returncode}; its last lines:\n{lines}"
        )


def cpu_seconds(pid: int | str = "self") -> float:
    """User plus system CPU seconds of process ``pid`` (all its threads) so far."""
    seconds = _ProcessFigures(Path(f"/proc/{pid}")).cpu_seconds()
    if seconds is None:
        raise RuntimeError(f"cannot read the CPU time of process {pid}")
    return seconds
