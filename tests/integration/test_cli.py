"""The ``crmphone`` command, run as a real subprocess against a real sandbox."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from crmphone.sandbox import SandboxServer
from crmphone.testing import TEST_CLIENT_ID, TEST_CLIENT_SECRET

pytestmark = pytest.mark.timeout(60)


async def crmphone(*args: str, secret: str = TEST_CLIENT_SECRET) -> asyncio.subprocess.Process:
    environment = dict(os.environ, CRMPHONE_CLIENT_ID=TEST_CLIENT_ID, CRMPHONE_CLIENT_SECRET=secret)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crmphone",
        *args,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def events_args(sandbox: SandboxServer, *topics: str, duration: float) -> list[str]:
    args = ["events", "--api-base", sandbox.base_url, "--login-base", sandbox.base_url]
    for topic in topics:
        args += ["--topic", topic]
    return [*args, "--duration", str(duration), "--heartbeat-timeout", "1", "--pong-timeout", "1"]


async def wait_until_following(process: asyncio.subprocess.Process) -> None:
    assert process.stderr is not None
    async with asyncio.timeout(20):
        while b"following" not in await process.stderr.readline():
            pass


async def test_events_prints_each_event_as_the_platform_sent_it(sandbox: SandboxServer) -> None:
    """Every event is one compact JSON line with the platform's topicName and eventBody unchanged."""
    topic = f"v2.users.{sandbox.sandbox.agents[0].id}.conversations.calls"
    process = await crmphone(*events_args(sandbox, topic, duration=4))
    await wait_until_following(process)
    await sandbox.sandbox.calls.place_inbound(sandbox.sandbox.agents[0].id)
    stdout, _ = await process.communicate()
    assert process.returncode == 0
    lines = stdout.decode().splitlines()
    emitted = [e for e in sandbox.sandbox.ledger if e.topic_name == topic]
    assert len(lines) == len(emitted) >= 4
    for line, event in zip(lines, emitted, strict=True):
        assert json.loads(line) == {"topicName": topic, "eventBody": event.event_body}
        assert ", " not in line.split('"eventBody"')[0]  # compact separators


async def test_events_explains_a_close(sandbox: SandboxServer) -> None:
    """With --explain, a maintenance close is explained in full on stderr, and no event is lost."""
    topic = f"v2.users.{sandbox.sandbox.agents[0].id}.presence"
    process = await crmphone(*events_args(sandbox, topic, duration=3), "--explain")
    await wait_until_following(process)
    sandbox.sandbox.publish(topic, {"n": 1})
    sandbox.sandbox.faults.socket_closing(close_after=0.3)
    await asyncio.sleep(1.0)
    sandbox.sandbox.publish(topic, {"n": 2})
    stdout, stderr = await process.communicate()
    assert process.returncode == 0
    assert [json.loads(line)["eventBody"] for line in stdout.decode().splitlines()] == [
        {"n": 1},
        {"n": 2},
    ]
    explained = stderr.decode()
    assert "likely cause" in explained
    assert "MAINTENANCE" in explained


async def test_events_bad_credentials_exit_non_zero_with_one_line(sandbox: SandboxServer) -> None:
    """Wrong credentials end the command with exit 1 and a one-line reason that hides the secret."""
    topic = f"v2.users.{sandbox.sandbox.agents[0].id}.presence"
    process = await crmphone(*events_args(sandbox, topic, duration=5), secret="wrong-secret-77")
    stdout, stderr = await process.communicate()
    assert process.returncode == 1
    message = stderr.decode().strip()
    assert message.startswith("crmphone events: bad credentials")
    assert len(message.splitlines()) == 1
    assert "wrong-secret-77" not in message + stdout.decode()


async def test_events_without_credentials_is_a_usage_error() -> None:
    """No credentials at all is a usage error (exit 2) that says which variables to set."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CRMPHONE_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crmphone",
        "events",
        "--region",
        "mypurecloud.com",
        "--topic",
        "v2.users.x.presence",
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    assert process.returncode == 2
    assert "CRMPHONE_CLIENT_ID" in stderr.decode()


async def test_sandbox_command_prints_how_to_connect_and_stops_on_interrupt() -> None:
    """`crmphone sandbox` prints its URL, credentials and agents, serves, and stops on Ctrl-C."""
    process = await crmphone("sandbox", "--port", "0", "--agents", "2")
    assert process.stdout is not None
    banner = []
    async with asyncio.timeout(20):
        while not banner or not banner[-1].startswith("  try:"):
            banner.append((await process.stdout.readline()).decode())
    text = "".join(banner)
    assert "listening on http://127.0.0.1:" in text
    assert TEST_CLIENT_ID in text
    assert TEST_CLIENT_SECRET not in text  # a secret from the environment is not echoed
    process.send_signal(signal.SIGINT)
    async with asyncio.timeout(10):
        await process.wait()
    assert process.returncode in (0, 130)


async def test_demo_runs_the_whole_house_and_stops_by_itself(tmp_path: Path) -> None:
    """`crmphone demo` needs nothing but the package and its plugins: calls are placed, answered
    and logged in both CRMs, it exits 0 by itself and says where its report is."""
    process = await crmphone(
        "demo",
        "--calls",
        "3",
        "--agents",
        "2",
        "--talk-seconds",
        "0.5",
        "--no-live",
        "--output",
        str(tmp_path),
    )
    async with asyncio.timeout(120):
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, (stdout + stderr).decode()
    text = stdout.decode()
    assert "answered 3" in text
    assert "lost 0" in text
    report = json.loads((tmp_path / "demo-report.json").read_text())
    assert len(report["calls"]) == 3
    assert (tmp_path / "demo-report.html").is_file()
