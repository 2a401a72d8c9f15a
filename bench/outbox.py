"""Durable outbox benchmarks → ``bench/results/outbox.json``.

1. Throughput: calls' events submitted as fast as the router and outbox take them (many
   submitters at once, so commits are shared), delivered to a no-op adapter; events per second
   from the first submit until the last write is done. Goal ≥ 5,000/s. Baseline in the same run:
   the same pipeline on an in-memory database (no durability), as a ratio.
2. Added latency at 100 events/s: each call's connect event, submitted alone every 10 ms, until
   the adapter's ``log_call`` runs. Goal p99 ≤ 5 ms.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from crmphone.adapters import Adapter, AdapterContext, CallLog, Outbox, OutboxSettings
from crmphone.events import CallConnected
from crmphone.testing.recording import fake_call

CALLS = int(os.environ.get("CRMPHONE_BENCH_OUTBOX_CALLS", "5000"))
LATENCY_EVENTS = int(os.environ.get("CRMPHONE_BENCH_OUTBOX_LATENCY_EVENTS", "1000"))
SUBMITTERS = 32


class NoOpAdapter(Adapter):
    """Logs nothing, as fast as possible; notes when each log write arrived."""

    def __init__(self, context: AdapterContext) -> None:
        super().__init__(context)
        self.arrivals: dict[str, float] = {}
        self.writes = 0

    async def log_call(self, log: CallLog) -> None:
        self.arrivals.setdefault(log.key, time.perf_counter())
        self.writes += 1


async def _throughput(path: Path | str) -> dict[str, Any]:
    adapter = NoOpAdapter(AdapterContext(name="noop"))
    calls = [fake_call(agent_id="agent-1", number=f"+1555{i:07d}") for i in range(CALLS)]
    events = [event for call in calls for event in call]
    settings = OutboxSettings(path=path, concurrency=16)
    async with Outbox(settings, {"noop": adapter}) as outbox:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for call_index in range(CALLS):
            queue.put_nowait(call_index)

        async def submitter() -> None:
            while not queue.empty():
                for event in calls[queue.get_nowait()]:
                    await outbox.submit([event])

        started = time.perf_counter()
        await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
        submitted = time.perf_counter()
        assert await outbox.wait_idle(600)
        finished = time.perf_counter()
    return {
        "events": len(events),
        "log_writes": adapter.writes,
        "submit_events_per_second": round(len(events) / (submitted - started)),
        "events_per_second": round(len(events) / (finished - started)),
    }


async def _latency(path: Path) -> dict[str, Any]:
    adapter = NoOpAdapter(AdapterContext(name="noop"))
    calls = [fake_call(agent_id="agent-1", number=f"+1556{i:07d}") for i in range(LATENCY_EVENTS)]
    async with Outbox(OutboxSettings(path=path), {"noop": adapter}) as outbox:
        # Alerting first (makes no work for a log-only adapter), then each connect alone.
        await asyncio.gather(*(outbox.submit([call[0]]) for call in calls))
        sent: dict[str, float] = {}
        next_at = time.perf_counter()
        for call in calls:
            connected = call[1]
            assert isinstance(connected, CallConnected)
            next_at += 0.010
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            key = f"{connected.conversation_id}:{connected.participant_id}"
            sent[key] = time.perf_counter()
            await outbox.submit([connected])
        assert await outbox.wait_idle(60)
    added = sorted((adapter.arrivals[key] - at) * 1000 for key, at in sent.items())

    def pick(q: float) -> float:
        return round(added[min(len(added) - 1, int(q * len(added)))], 2)

    return {"events": len(added), "p50_ms": pick(0.5), "p90_ms": pick(0.9), "p99_ms": pick(0.99)}


async def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        durable = await _throughput(Path(scratch) / "throughput.sqlite3")
        print(f"   durable: {durable}", flush=True)
        memory = await _throughput(":memory:")
        print(f"   in memory (baseline): {memory}", flush=True)
        latency = await _latency(Path(scratch) / "latency.sqlite3")
        print(f"   added latency at 100 events/s: {latency}", flush=True)
    ratio = round(durable["events_per_second"] / memory["events_per_second"], 2)
    return {
        "calls": CALLS,
        "throughput": {
            "durable": durable,
            "in_memory_baseline": memory,
            "durable_over_memory": ratio,
        },
        "latency_at_100_per_second": latency,
        "goals": [
            {
                "name": "durable events/s through router + outbox to a no-op adapter",
                "measured": durable["events_per_second"],
                "goal": ">= 5000",
                "met": durable["events_per_second"] >= 5000,
            },
            {
                "name": "p99 added latency per event at 100 events/s (ms)",
                "measured": latency["p99_ms"],
                "goal": "<= 5",
                "met": latency["p99_ms"] <= 5,
            },
        ],
    }
