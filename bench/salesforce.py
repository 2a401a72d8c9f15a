"""Salesforce plugin benchmark → ``bench/results/salesforce.json``.

A burst of calls (default 1,000: alerting, connect, end and wrap-up each, all at once) goes
through crmphone's durable outbox to the Salesforce adapter and the local Salesforce emulator
over HTTPS. Measured from the emulator's own request counters:

* Salesforce API requests per logged call for logging (Task writes), with batching (sObject
  Collections) and — the baseline in the same run — with the same adapter writing one Task per
  request. Goal ≤ 0.05 with batching (naive is ≥ 1, and ≥ 2 when calls are logged as they go).
* Total requests per call including the caller lookups (one SOSL search per new number).
* Logged calls per second, from the first event to the last Task written.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from crmphone.adapters import Adapter, AdapterContext, Outbox, OutboxSettings
from crmphone.testing.recording import fake_call
from crmphone_salesforce import SalesforceAdapter
from crmphone_salesforce.emulator import SalesforceEmulator

CALLS = int(os.environ.get("CRMPHONE_BENCH_SALESFORCE_CALLS", "1000"))
_WRITE_ROUTES = ("composite", "upsert", "sobject")


class OneTaskPerRequest(SalesforceAdapter):
    """The baseline: the same adapter without its bulk write."""

    log_calls = Adapter.log_calls


async def _burst(kind: type[SalesforceAdapter], scratch: Path, label: str) -> dict[str, Any]:
    async with SalesforceEmulator(seed=0) as emulator:
        os.environ["CRMPHONE_BENCH_SF_SESSION"] = emulator.session_id
        context = AdapterContext(name="salesforce", agents={}, timeout=30.0)
        adapter = kind.from_options(
            {
                "instance_url": emulator.url,
                "session_id_env": "CRMPHONE_BENCH_SF_SESSION",
                "ca_file": str(emulator.ca_file),
            },
            context,
        )
        calls = [fake_call(number=f"+1555{7_000_000 + i:07d}") for i in range(CALLS)]
        settings = OutboxSettings(path=scratch / f"{label}.sqlite3", hook_timeout=120.0)
        before = dict(emulator.model.stats.requests)
        async with Outbox(settings, {"salesforce": adapter}) as outbox:
            started = time.perf_counter()
            for events in calls:
                await outbox.submit(events)
            submitted = time.perf_counter()
            assert await outbox.wait_idle(600), "the outbox did not drain"
            finished = time.perf_counter()
            stats = outbox.stats
        context.close()
        counts = {
            route: emulator.model.stats.requests[route] - before.get(route, 0)
            for route in (*_WRITE_ROUTES, "search", "oauth")
        }
        tasks = emulator.model.find("Task", Status="Completed")
        logged = sum(1 for task in tasks if task.get("CallDisposition") == "resolved")
    writes = sum(counts[route] for route in _WRITE_ROUTES)
    total = sum(counts.values())
    return {
        "calls": CALLS,
        "completed_tasks": logged,
        "dead_letters": stats.dead_letters["salesforce"],
        "requests": counts,
        "logging_requests_per_call": round(writes / CALLS, 4),
        "requests_per_call_with_lookups": round(total / CALLS, 4),
        "logged_calls_per_second": round(CALLS / (finished - started), 1),
        "submit_seconds": round(submitted - started, 3),
        "drain_seconds": round(finished - started, 3),
    }


async def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        batched = await _burst(SalesforceAdapter, Path(scratch), "batched")
        print(f"   batched: {batched}", flush=True)
        naive = await _burst(OneTaskPerRequest, Path(scratch), "naive")
        print(f"   one Task per request (baseline): {naive}", flush=True)
    saved = round(
        naive["logging_requests_per_call"] / max(batched["logging_requests_per_call"], 1e-9), 1
    )
    return {
        "calls": CALLS,
        "batched": batched,
        "one_task_per_request_baseline": naive,
        "logging_requests_naive_over_batched": saved,
        "goals": [
            {
                "name": "Salesforce API requests per logged call (logging, burst of "
                f"{CALLS} calls)",
                "measured": batched["logging_requests_per_call"],
                "goal": "<= 0.05",
                "met": batched["logging_requests_per_call"] <= 0.05,
            },
            {
                "name": "every call logged once, completed, no dead letters",
                "measured": f"{batched['completed_tasks']}/{CALLS}",
                "goal": f"{CALLS}/{CALLS}",
                "met": batched["completed_tasks"] == CALLS and batched["dead_letters"] == 0,
            },
        ],
    }
