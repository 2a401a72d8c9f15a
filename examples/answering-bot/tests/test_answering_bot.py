"""Smoke tests of the answering-bot example: the script runs as a developer runs it (a subprocess).

With no arguments it brings its own sandbox and places its own calls. With ``--api-base`` it is
pointed at a sandbox this test runs, with a real agent token in the environment, so that the
test can place the calls, ask the media edge what the caller heard, and check that the token
never shows.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crmphone.sandbox import SandboxServer
from crmphone.testing import fast_sandbox_config, sign_in_sandbox_agent

SCRIPT = Path(__file__).resolve().parents[1] / "answering_bot.py"
PUBLIC_MODULES = {
    "crmphone",
    "crmphone.audio",
    "crmphone.phone",
    "crmphone.platform",
    "crmphone.sandbox",
    "crmphone.testing",
}
SECRET = "agent-token-do-not-print-7d41c9"
C5 = 523.25  # the chime's last and longest note: what the edge's analysis should find
CALL_LINE = re.compile(
    r"^call (\d+) from \+\d+: answered over (the persistent|a new) connection; "
    r"first audio (\d+) ms after answering$"
)
WITHIN = 45.0  # seconds for one run of the script; pytest's own timeout is 60


class Bot:
    """The script running in a subprocess, its stdout read line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.stderr = ""

    async def next_line(self) -> str:
        """The next line the bot prints on stdout (bounded in time)."""
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), WITHIN)
        assert raw, f"the bot ended early; stderr: {await self._stderr()}"
        self.lines.append(raw.decode().rstrip("\n"))
        return self.lines[-1]

    async def finish(self) -> int:
        """Wait for the exit; collect the rest of stdout and stderr; return the exit code."""
        out, err = await asyncio.wait_for(self.process.communicate(), WITHIN)
        self.lines += out.decode().splitlines()
        self.stderr = err.decode()
        assert self.process.returncode is not None
        return self.process.returncode

    async def _stderr(self) -> str:
        assert self.process.stderr is not None
        return (await asyncio.wait_for(self.process.stderr.read(), 5)).decode()


async def start_bot(tmp_path: Path, *args: str, token: str = SECRET) -> Bot:
    """Start the script as a developer would, from another directory, with a token set."""
    environment = dict(os.environ, CRMPHONE_AGENT_TOKEN=token)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        *args,
        cwd=tmp_path,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    return Bot(process)


async def stop(bot: Bot) -> None:
    """Make sure the bot is gone (a failed test must not leave it running)."""
    if bot.process.returncode is None:
        bot.process.kill()
        await bot.process.wait()


def parse(line: str) -> tuple[int, bool, int]:
    """(call number, over the persistent connection, first audio in ms) from one printed line."""
    match = CALL_LINE.match(line)
    assert match is not None, f"not a call line: {line!r}"
    return int(match[1]), match[2] == "the persistent", int(match[3])


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    """A sandbox with one agent whose callers stay on the line until the bot hangs up."""
    config = fast_sandbox_config(agents=1, talk_seconds=30.0, heartbeat_interval=1.0)
    async with SandboxServer(config, host="127.0.0.1", port=0) as server:
        yield server


async def station(http: httpx.AsyncClient) -> dict[str, Any]:
    """The media edge's statistics of the one agent's station."""
    response = await http.get("/sandbox/stats")
    response.raise_for_status()
    stations: list[dict[str, Any]] = response.json()["stations"]
    return stations[0]


@pytest.mark.slow
async def test_with_no_arguments_it_answers_its_own_calls_over_the_persistent_connection(
    tmp_path: Path,
) -> None:
    """With no arguments the bot answers two sandbox calls, the second over the persistent connection."""
    bot = await start_bot(tmp_path, "--calls", "2")
    try:
        code = await bot.finish()
    finally:
        await stop(bot)
    assert code == 0, bot.stderr
    calls = [parse(line) for line in bot.lines]
    assert [(number, persistent) for number, persistent, _ in calls] == [(1, False), (2, True)]
    assert "Traceback" not in bot.stderr
    assert SECRET not in "\n".join(bot.lines) + bot.stderr


@pytest.mark.slow
async def test_against_a_platform_it_greets_each_caller_and_never_shows_the_token(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """Pointed at a platform with the agent's token, the bot greets both callers and never prints the token."""
    agent_id = sandbox.sandbox.agents[0].id
    tokens = await sign_in_sandbox_agent(
        sandbox.base_url, agent_id, client_id=sandbox.config.client_id
    )
    token = (await tokens.token()).value
    bot = await start_bot(
        tmp_path,
        *("--calls", "2", "--api-base", sandbox.base_url, "--ice-host", "127.0.0.1"),
        token=token,
    )
    try:
        async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
            async with asyncio.timeout(WITHIN):
                while not (await station(http))["signallingConnected"]:
                    await asyncio.sleep(0.05)  # the bot has signed in once its phone is online
            for number in (1, 2):
                placed = await http.post("/sandbox/calls", json={"agentId": agent_id})
                placed.raise_for_status()
                assert parse(await bot.next_line())[0] == number
            code = await bot.finish()
            calls = (await station(http))["calls"]
    finally:
        await stop(bot)
    assert code == 0, bot.stderr
    assert [parse(line)[1] for line in bot.lines] == [False, True]
    assert [call["overExistingConnection"] for call in calls] == [False, True]
    for call in calls:  # the edge analysed what the caller heard: the chime
        assert call["agentToneHz"] == pytest.approx(C5, rel=0.03), calls
    output = "\n".join(bot.lines) + bot.stderr
    assert token not in output
    assert SECRET not in output


async def test_a_refused_token_ends_the_run_with_exit_1_and_is_not_shown(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """A token the platform refuses ends the bot with exit code 1, a message, and no token in it."""
    bot = await start_bot(
        tmp_path, "--api-base", sandbox.base_url, "--ice-host", "127.0.0.1", token=SECRET
    )
    try:
        code = await bot.finish()
    finally:
        await stop(bot)
    assert code == 1, bot.stderr
    assert bot.stderr.startswith("answering-bot: ")
    assert "Traceback" not in bot.stderr
    assert SECRET not in "\n".join(bot.lines) + bot.stderr


async def test_api_base_without_a_token_is_a_usage_error(tmp_path: Path) -> None:
    """``--api-base`` without ``CRMPHONE_AGENT_TOKEN`` exits 2 and names the variable."""
    bot = await start_bot(tmp_path, "--api-base", "mypurecloud.de", token="")
    try:
        code = await bot.finish()
    finally:
        await stop(bot)
    assert code == 2
    assert "CRMPHONE_AGENT_TOKEN" in bot.stderr


@pytest.mark.slow
async def test_ctrl_c_stops_it_cleanly(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) after the first call ends the bot with exit code 130 and no traceback."""
    bot = await start_bot(tmp_path, "--calls", "50")
    try:
        parse(await bot.next_line())
        bot.process.send_signal(signal.SIGINT)
        code = await bot.finish()
    finally:
        await stop(bot)
    assert code == 130, bot.stderr
    assert "Traceback" not in bot.stderr
    assert bot.stderr.rstrip().endswith("interrupted")


def test_the_script_uses_only_the_public_api() -> None:
    """Every crmphone import in the script names a public module and a name in its ``__all__``."""
    tree = ast.parse(SCRIPT.read_text(encoding="utf-8"))
    imported: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not any(alias.name.startswith("crmphone") for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("crmphone"):
            imported += [(str(node.module), alias.name) for alias in node.names]
    assert imported, "the script imports nothing from crmphone"
    for module, name in imported:
        assert module in PUBLIC_MODULES, f"{module} is not a public module"
        assert name in importlib.import_module(module).__all__, f"{module}.{name} is not public"
