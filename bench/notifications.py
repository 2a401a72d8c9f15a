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
import contextlib
import json
import multiprocessing
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from typing import Any

import httpx
import orjson
import websockets
from websockets.asyncio.server import ServerConnection, serve

from crmphone.notifications import ChannelSettings, CloseDiagnosis, LikelyCause, NotificationStream
from crmphone.platform import ClientCredentials, PlatformClient, StaticToken
from crmphone.sandbox import SandboxConfig, SandboxServer

TOPIC = "v2.users.2f1d3c4e-0000-4000-8000-000000000001.conversations.calls"
END_TOPIC = "v2.users.2f1d3c4e-0000-4000-8000-000000000001.presence"
EVENTS = 60_000
ROUNDS = 3
CLIENT_SECRET = "bench-secret"


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


async def _raw(uri: str, control: Connection, loads: Any = json.loads) -> float:
    async with websockets.connect(uri, ping_interval=None, max_size=None) as ws:
        control.send("blast")
        count = 0
        start = 0.0
        async for message in ws:
            if count == 0:
                start = time.perf_counter()
            data = loads(message)
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
        raw_orjson_rates: list[float] = []
        our_rates: list[float] = []
        for _ in range(ROUNDS):
            raw_rates.append(await _raw(f"ws://127.0.0.1:{port}/raw", parent))
            raw_orjson_rates.append(
                await _raw(f"ws://127.0.0.1:{port}/raw", parent, loads=orjson.loads)
            )
            our_rates.append(await _ours(port, parent))
        parent.send("stop")
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
    raw, ours = statistics.median(raw_rates), statistics.median(our_rates)
    raw_orjson = statistics.median(raw_orjson_rates)
    return {
        "events_per_round": EVENTS,
        "raw_events_per_s": [round(r) for r in raw_rates],
        "raw_orjson_events_per_s": [round(r) for r in raw_orjson_rates],
        "crmphone_events_per_s": [round(r) for r in our_rates],
        "ratio": round(ours / raw, 3),
        # crmphone parses with orjson when it is installed: this ratio shows our own overhead alone.
        "ratio_vs_raw_orjson": round(ours / raw_orjson, 3),
    }


@contextlib.asynccontextmanager
async def _sandbox_and_client() -> AsyncIterator[tuple[SandboxServer, PlatformClient]]:
    """A sandbox with one agent and 1 s heartbeats, and a client authenticated against it."""
    config = SandboxConfig(
        client_id="bench",
        client_secret=CLIENT_SECRET,
        heartbeat_interval=1.0,
        rate_limit_per_minute=0,
        agents=1,
        ledger_limit=0,  # the rollover run compares all 50,000 events with the ledger
    )
    async with SandboxServer(config, host="127.0.0.1", port=0) as server:
        tokens = ClientCredentials(
            login_base=server.base_url, client_id=config.client_id, client_secret=CLIENT_SECRET
        )
        async with PlatformClient(api_base=server.base_url, tokens=tokens) as client:
            yield server, client


async def rollovers(count: int = 100, rate: int = 2000) -> dict[str, Any]:
    """Maintenance closes every 0.25 s under a steady stream; compare received with the ledger."""
    settings = ChannelSettings(heartbeat_timeout=3.0, pong_timeout=1.0, drain_seconds=0.1)
    async with _sandbox_and_client() as (server, client):
        topic = f"v2.users.{server.sandbox.agents[0].id}.conversations.calls"
        received: list[int] = []
        async with NotificationStream(client, [topic], settings=settings) as stream:

            async def consume() -> None:
                async for event in stream:
                    # Appended one by one: the list is read while the stream still runs.
                    received.append(event.event_body["seq"])  # noqa: PERF401

            consumer = asyncio.create_task(consume())
            published = 0
            batch = rate // 100  # publish in 10 ms batches
            start = time.perf_counter()
            for tick in range(count * 25):  # 0.25 s between maintenance closes
                for _ in range(batch):
                    server.sandbox.publish(topic, {"seq": published})
                    published += 1
                if tick % 25 == 0:
                    server.sandbox.faults.socket_closing(close_after=0.2)
                await asyncio.sleep(max(0.0, start + (tick + 1) * 0.01 - time.perf_counter()))
            elapsed = time.perf_counter() - start
            emitted = [e.event_body["seq"] for e in server.sandbox.ledger if e.channel_ids]
            deadline = time.perf_counter() + 10
            while len(received) < len(emitted) and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            consumer.cancel()
            stats = stream.stats
    lost = len(set(emitted) - set(received))
    return {
        "rollovers_requested": count,
        "rollovers_done": stats.rollovers,
        "events_published": published,
        "events_emitted_to_a_socket": len(emitted),
        "events_received": len(received),
        "publish_rate_per_s": round(published / elapsed),
        "lost": lost,
        "duplicated": len(received) - len(set(received)),
        "duplicates_dropped_by_dedupe": stats.duplicates_dropped,
        "reconnects_with_gap": stats.reconnects,
    }


async def _detect_once(heartbeat_timeout: float, pong_timeout: float) -> float:
    settings = ChannelSettings(heartbeat_timeout=heartbeat_timeout, pong_timeout=pong_timeout)
    detected = asyncio.get_running_loop().create_future()

    def on_close(diagnosis: CloseDiagnosis) -> None:
        if not detected.done():
            detected.set_result((time.perf_counter(), diagnosis))

    async with _sandbox_and_client() as (server, client):
        topic = f"v2.users.{server.sandbox.agents[0].id}.presence"
        async with NotificationStream(client, [topic], settings=settings, on_close=on_close):
            await asyncio.sleep(1.5)
            silenced = time.perf_counter()
            server.sandbox.faults.silence()
            at, diagnosis = await asyncio.wait_for(detected, heartbeat_timeout + pong_timeout + 10)
            assert diagnosis.cause is LikelyCause.NETWORK_SILENCE, diagnosis.one_line()
            return float(at - silenced)


# (heartbeat_timeout, pong_timeout, runs): scaled timeouts for a steady figure, production once.
_DETECTION_CASES = {"scaled": (3.0, 1.0, 3), "production": (35.0, 5.0, 1)}


async def dead_detection() -> dict[str, Any]:
    """Time to abandon a silent socket, against a budget of heartbeat + pong timeout + 1 s."""
    result: dict[str, Any] = {}
    for name, (heartbeat_timeout, pong_timeout, runs) in _DETECTION_CASES.items():
        detected = [await _detect_once(heartbeat_timeout, pong_timeout) for _ in range(runs)]
        result[name] = {
            "heartbeat_timeout": heartbeat_timeout,
            "pong_timeout": pong_timeout,
            "budget_s": heartbeat_timeout + pong_timeout + 1.0,
            "detected_after_s": [round(seconds, 3) for seconds in detected],
        }
    return result


async def run() -> dict[str, Any]:
    """Every notification benchmark, with goals."""
    result: dict[str, Any] = {
        "throughput": await throughput(),
        "rollovers": await rollovers(),
        "dead_detection": await dead_detection(),
    }
    ratio = result["throughput"]["ratio"]
    rolls = result["rollovers"]
    result["goals"] = [
        {
            "name": "throughput ratio vs raw websockets + json.loads",
            "measured": ratio,
            "goal": ">= 0.7",
            "met": ratio >= 0.7,
        },
        {
            "name": f"events lost across {rolls['rollovers_done']} maintenance rollovers "
            f"at {rolls['publish_rate_per_s']:,}/s",
            "measured": rolls["lost"],
            "goal": "0",
            "met": rolls["lost"] == 0,
        },
        {
            "name": f"events duplicated across {rolls['rollovers_done']} maintenance rollovers "
            f"at {rolls['publish_rate_per_s']:,}/s",
            "measured": rolls["duplicated"],
            "goal": "0",
            "met": rolls["duplicated"] == 0,
        },
    ]
    for name, case in result["dead_detection"].items():
        worst = max(case["detected_after_s"])
        result["goals"].append(
            {
                "name": f"silent link detected ({name}: {case['heartbeat_timeout']:g} s + "
                f"{case['pong_timeout']:g} s), worst of {len(case['detected_after_s'])}",
                "measured": worst,
                "goal": f"<= {case['budget_s']:g} s",
                "met": worst <= case["budget_s"],
            }
        )
    return result
