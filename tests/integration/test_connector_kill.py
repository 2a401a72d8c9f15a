"""`crmphone run` killed with SIGKILL mid-stream and restarted: no call log lost or rewritten.

A real connector process follows a sandbox on loopback and posts call logs to a real webhook
receiver (the crmphone-webhook example plugin, installed as a distribution). The receiver is slow
at first, so writes are in flight when the connector is killed; calls go on while it is down.
After the restart every call has its final log, and every write that was repeated carried the
same ``Idempotency-Key`` with the same content.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from crmphone.sandbox import SandboxServer
from crmphone.testing import TEST_CLIENT_ID, TEST_CLIENT_SECRET, fast_sandbox_config
from crmphone.testing.connector import connector_process

EXAMPLE_TESTS = Path(__file__).resolve().parents[2] / "examples" / "webhook-adapter" / "tests"
sys.path.insert(0, str(EXAMPLE_TESTS))

from receiver import WebhookReceiver  # noqa: E402 - the example's test receiver, by path

pytestmark = pytest.mark.timeout(120)


ENVIRONMENT = dict(
    os.environ, CRMPHONE_CLIENT_ID=TEST_CLIENT_ID, CRMPHONE_CLIENT_SECRET=TEST_CLIENT_SECRET
)


def final_logs(receiver: WebhookReceiver) -> dict[str, dict[str, Any]]:
    """The latest stored log per call (log key), from the receiver's records."""
    latest: dict[str, dict[str, Any]] = {}
    order = ["connected", "ended", "wrapped_up"]
    for record in receiver.records.values():
        log = record["log"]
        previous = latest.get(log["key"])
        if previous is None or order.index(log["stage"]) > order.index(previous["stage"]):
            latest[log["key"]] = log
    return latest


async def test_a_killed_connector_loses_nothing_and_writes_nothing_twice(tmp_path: Path) -> None:
    """SIGKILL with writes in flight, calls during the downtime, restart: every call logged once."""
    sandbox_config = fast_sandbox_config(agents=2, talk_seconds=0.3, wrapup_seconds=0.1)
    async with (
        SandboxServer(sandbox_config, host="127.0.0.1", port=0) as sandbox,
        WebhookReceiver() as receiver,
    ):
        config = tmp_path / "connector.toml"
        config.write_text(
            f"""
[platform]
kind = "sandbox"
url = "{sandbox.base_url}"

[[adapters]]
name = "webhook"
url = "{receiver.url}"

[outbox]
path = "outbox.sqlite3"
initial_delay = 0.05
max_delay = 0.3
"""
        )
        platform = sandbox.sandbox
        agents = [agent.id for agent in platform.agents]
        placed: list[str] = []

        receiver.slow_next(6, seconds=1.0)
        async with connector_process(config, env=ENVIRONMENT) as first:
            for index in range(4):
                placed.append(await platform.calls.place_inbound(agents[index % 2]))
            await receiver.wait_for_requests(2, within=20)
            first.process.send_signal(signal.SIGKILL)
            assert await first.process.wait() == -signal.SIGKILL

        # While the connector is down, two more calls come and go.
        for index in range(2):
            placed.append(await platform.calls.place_inbound(agents[index % 2]))
        for conversation_id in placed:
            await platform.calls.wait_closed(conversation_id)

        async with connector_process(config, env=ENVIRONMENT) as second:
            async with asyncio.timeout(40):
                while True:
                    logs = final_logs(receiver)
                    finished = {
                        log["conversationId"]
                        for log in logs.values()
                        if log["stage"] == "wrapped_up"
                    }
                    if finished >= set(placed):
                        break
                    await asyncio.sleep(0.1)
        assert second.process.returncode == 0  # stopped with SIGTERM, cleanly

    # Nothing lost: every call's log reached its final stage.
    logs = final_logs(receiver)
    assert {log["conversationId"] for log in logs.values()} == set(placed)
    # Nothing written twice differently: a repeated key always carried the same content.
    by_key: dict[str, list[Any]] = {}
    for attempt in receiver.attempts:
        if attempt.key is not None:
            by_key.setdefault(attempt.key, []).append(attempt.body)
    for key, bodies in by_key.items():
        assert all(body == bodies[0] for body in bodies), key
    # The kill did cut writes short: some were sent again after the restart, under their key.
    assert any(len(bodies) > 1 for bodies in by_key.values())
    # One record per (call, stage) at most: keys are the write keys of the logs.
    assert all(record["log"]["writeKey"] == key for key, record in receiver.records.items())
