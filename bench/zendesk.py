"""Zendesk plugin benchmark → ``bench/results/zendesk.json``.

Calls ring at a steady pace (default 200 calls, 20 a second), each answered, ended and wrapped up,
through crmphone's durable outbox to the Zendesk adapter and the local Zendesk emulator over
HTTPS, with each caller's lookup already cached (the callers are the emulator's seeded end users,
looked up once before the run). Measured:

* time from the ring (the alerting event submitted to the outbox) to the emulator receiving the
  agent's display request (the screen pop). Goal p99 ≤ 50 ms. The baseline in the same run is
  the same measure with the cache cold (every lookup goes to Zendesk's search first).
* Zendesk API requests per logged call, by route.
"""

from __future__ import annotations

import asyncio
import collections
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from crmphone.adapters import AdapterContext, LogStage, Outbox, OutboxSettings
from crmphone.events import CallAlerting
from crmphone.testing import fake_call_logs
from crmphone.testing.recording import fake_call
from crmphone_zendesk import ZendeskAdapter
from crmphone_zendesk.emulator import ZendeskEmulator

CALLS = int(os.environ.get("CRMPHONE_BENCH_ZENDESK_CALLS", "200"))
PER_SECOND = 20.0


def _pick(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


async def _run(scratch: Path, *, warm: bool) -> dict[str, Any]:
    async with ZendeskEmulator(seed=0, rate_limit=100_000) as emulator:
        os.environ["CRMPHONE_BENCH_ZD_TOKEN"] = emulator.api_token
        agent = str(emulator.model.agents[0].id)
        context = AdapterContext(name="zendesk", agents={"agent-1": agent}, timeout=30.0)
        adapter = ZendeskAdapter.from_options(
            {
                "base_url": emulator.url,
                "email": emulator.email,
                "token_env": "CRMPHONE_BENCH_ZD_TOKEN",
                "ca_file": str(emulator.ca_file),
                "lookup_cache_seconds": 3600 if warm else 0,
            },
            context,
        )
        callers = [user for user in emulator.model.customers if user.phone][:40]
        # Numbers shared by two customers pop nothing (ambiguous): keep the unique ones.
        numbers = [
            user.phone
            for user in callers
            if user.phone and len(emulator.model.users_with_phone(user.phone)) == 1
        ]
        if warm:
            for number in numbers:
                await adapter.lookup_caller(fake_call_logs(number=number)[LogStage.CONNECTED])
        before = collections.Counter(emulator.model.stats.requests)
        pops_before = len(emulator.model.displays)
        settings = OutboxSettings(path=scratch / f"zendesk-{warm}.sqlite3")
        rang: dict[str, float] = {}
        async with Outbox(settings, {"zendesk": adapter}) as outbox:
            next_at = time.monotonic()
            for index in range(CALLS):
                events = fake_call(agent_id="agent-1", number=numbers[index % len(numbers)])
                alerting = events[0]
                assert isinstance(alerting, CallAlerting)
                next_at += 1.0 / PER_SECOND
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                rang[alerting.conversation_id] = time.monotonic()
                await outbox.submit(events)
            assert await outbox.wait_idle(300), "the outbox did not drain"
        context.close()
        pops = emulator.model.displays[pops_before:]
        user_pops = [pop for pop in pops if pop.kind == "user"]
        ring_times = sorted(rang.values())
        # Display requests carry no call id: match each to the latest ring before it.
        latencies = []
        for pop in user_pops:
            earlier = [at for at in ring_times if at <= pop.at]
            if earlier:
                latencies.append((pop.at - earlier[-1]) * 1000)
        after = collections.Counter(emulator.model.stats.requests)
        used = {route: after[route] - before.get(route, 0) for route in after}
        used = {route: count for route, count in sorted(used.items()) if count}
        total = sum(count for route, count in used.items() if route != "total")
        tickets = sum(1 for t in emulator.model.tickets.values() if t.external_id)
    return {
        "calls": CALLS,
        "cache": "warm" if warm else "cold",
        "user_pops": len(user_pops),
        "tickets": tickets,
        "ring_to_display_ms": {
            "p50": _pick(latencies, 0.5),
            "p90": _pick(latencies, 0.9),
            "p99": _pick(latencies, 0.99),
        },
        "requests": used,
        "requests_per_logged_call": round(total / CALLS, 3),
    }


async def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        warm = await _run(Path(scratch), warm=True)
        print(f"   cache warm: {warm}", flush=True)
        cold = await _run(Path(scratch), warm=False)
        print(f"   cache cold (baseline): {cold}", flush=True)
    p99 = warm["ring_to_display_ms"]["p99"]
    return {
        "calls": CALLS,
        "per_second": PER_SECOND,
        "warm": warm,
        "cold_baseline": cold,
        "cold_over_warm_p50": round(
            cold["ring_to_display_ms"]["p50"] / max(warm["ring_to_display_ms"]["p50"], 1e-9), 2
        ),
        "goals": [
            {
                "name": "ring to display request p99 (ms, cache warm)",
                "measured": p99,
                "goal": "<= 50",
                "met": p99 <= 50,
            },
            {
                "name": "every call one ticket",
                "measured": f"{warm['tickets']}/{CALLS}",
                "goal": f"{CALLS}/{CALLS}",
                "met": warm["tickets"] == CALLS,
            },
        ],
    }
