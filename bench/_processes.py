"""The processes benchmarks run beside their own: a sandbox platform and a ``crmphone run``.

Each runs in a child process, so what it costs (CPU, memory) is its own and can be read from
``/proc/<pid>``, and a benchmark measures the product as users run it, not a copy in-process.

* :func:`sandbox_process` — a sandbox with the given :class:`~crmphone.sandbox.SandboxConfig`
  values; yields its base URL (:func:`sandbox_child` yields a :class:`Child`, with the pid).
* :func:`connector_child` — ``crmphone run --config … --health-port 0``; yields a
  :class:`Child` whose URL is the health server's (``/metrics``). Stopped with SIGTERM, as an
  operator would, and it must exit 0.
* :func:`cpu_seconds` and :func:`rss_mb` read any process's figures (Linux ``/proc``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs

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
_HEALTH_URL = re.compile(r"health on (http://\S+)")


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

    Its stderr is drained all along (a full pipe would stall it); the last lines are kept and
    shown if it fails to start or to stop cleanly. Raises RuntimeError then.
    """
    environment = dict(
        os.environ, CRMPHONE_CLIENT_ID=client_id, CRMPHONE_CLIENT_SECRET=client_secret
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crmphone",
        "run",
        "--config",
        str(config),
        "--health-port",
        "0",
        env=environment,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    tail: collections.deque[str] = collections.deque(maxlen=40)
    drain: asyncio.Task[None] | None = None
    try:
        url = await asyncio.wait_for(_health_url(process, tail), STARTUP_TIMEOUT)
        drain = asyncio.create_task(_drain(process, tail))
        yield Child(process.pid, url)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            process.kill()
            code = await process.wait()
        if drain is not None:
            await drain
    if code != 0:
        lines = "".join(tail)
        raise RuntimeError(f"crmphone run exited with {code}; its last lines:\n{lines}")


async def _health_url(process: asyncio.subprocess.Process, tail: collections.deque[str]) -> str:
    assert process.stderr is not None
    while True:
        line = (await process.stderr.readline()).decode(errors="replace")
        if not line:
            lines = "".join(tail)
            raise RuntimeError(f"crmphone run exited before it was ready:\n{lines}")
        tail.append(line)
        if "crmphone run: following" in line:
            found = _HEALTH_URL.search(line)
            if found is None:
                raise RuntimeError(f"no health URL in {line!r}")
            return found.group(1).rstrip(";,")


async def _drain(process: asyncio.subprocess.Process, tail: collections.deque[str]) -> None:
    assert process.stderr is not None
    while line := await process.stderr.readline():
        tail.append(line.decode(errors="replace"))


def cpu_seconds(pid: int | str = "self") -> float:
    """User plus system CPU seconds of process ``pid`` (all its threads) so far."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name, which sits in parentheses and may hold anything.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of process ``pid`` in MiB."""
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
