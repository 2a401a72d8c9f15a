"""Persistent-connection benchmarks → ``bench/results/answer_latency.json``.

The sandbox (platform, media edge) runs in its own process; the softphones run here.

1. Answer latency: time from the call alerting at the phone (the alerting event or, for a first
   call, the propose, whichever reaches it first) to two-way audio (the first RTP packet of the
   call received on both sides: the edge's receiver, our receiver), for 50 calls
   over a persistent connection and 50 calls with a fresh connection each (station without
   persistence: propose/proceed, offer/answer, ICE, DTLS every time), in the same run, on
   loopback and through a user-space delay of 50 ms and 150 ms round trip (a TCP delay proxy in
   front of REST, notifications and signalling; the edge's UDP relay for media — this kernel has
   no netem). Goals: persistent p99 ≤ 1.5 RTT + 25 ms; fresh/persistent p50 ≥ 4 at 150 ms.
   The same figures measured from the platform publishing ``alerting`` are written alongside
   (``two_way_from_platform_alerting_ms``): they add the event's one-way flight (half a round
   trip) to both kinds of call, which is why their ratio is lower.
2. Dead media path: time from the network vanishing (relay blackhole) to the phone reporting
   ``media_failure``, between calls and mid-call. Goal ≤ 3 s.
3. Idle cost: RSS per idle persistent session and CPU of 20 idle sessions between calls
   (goals ≤ 5 MB and < 2 % of one core).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx

from bench._processes import sandbox_process
from crmphone._webrtc import LOOPBACK_ICE
from crmphone.audio import Discard, Tone
from crmphone.events import ConnectionState, DownReason, PersistentConnectionDown
from crmphone.phone import PhoneSettings, Softphone
from crmphone.platform import PlatformClient
from crmphone.sandbox.relay import TcpDelayProxy
from crmphone.testing import fast_channel_settings, sign_in_sandbox_agent

CALLS = int(os.environ.get("CRMPHONE_BENCH_CALLS", "50"))
RTTS = (0.0, 0.05, 0.150)
IDLE_SESSIONS = 20
CLIENT_ID = "bench-client"


@contextlib.asynccontextmanager
async def phone_for(
    base_url: str, api_base: str, agent_id: str, **settings: Any
) -> AsyncIterator[Softphone]:
    tokens = await sign_in_sandbox_agent(base_url, agent_id, client_id=CLIENT_ID)
    values: dict[str, Any] = {
        "auto_answer": True,
        "ice": LOOPBACK_ICE,
        "channel": fast_channel_settings(heartbeat_timeout=30.0, pong_timeout=5.0),
    }
    values.update(settings)
    async with (
        PlatformClient(api_base=api_base, tokens=tokens) as client,
        Softphone(
            client, settings=PhoneSettings(**values), source=Tone(700), sink=Discard()
        ) as phone,
    ):
        yield phone


async def _admin(http: httpx.AsyncClient, method: str, path: str, body: Any = None) -> Any:
    response = await http.request(method, path, json=body)
    response.raise_for_status()
    return response.json()


async def _station(http: httpx.AsyncClient, agent_id: str) -> dict[str, Any]:
    stats = await _admin(http, "GET", "/sandbox/stats")
    return next(s for s in stats["stations"] if s["userId"] == agent_id)


async def _wait_state(phone: Softphone, state: ConnectionState, within: float = 15.0) -> None:
    async with asyncio.timeout(within):
        while phone.status.connection is not state:
            await asyncio.sleep(0.01)


async def _measured(
    http: httpx.AsyncClient, phone: Softphone, agent_id: str, conversation_id: str
) -> tuple[dict[str, Any], Any]:
    """The edge's record and our timing of a call, once both saw the first RTP."""
    async with asyncio.timeout(20):
        # Wait locally first: polling the sandbox's stats while the call is being answered
        # would load its event loop exactly when the answer is measured.
        while (timing := phone.timing(conversation_id)) is None or timing.first_rtp_at is None:
            await asyncio.sleep(0.01)
        while True:
            station = await _station(http, agent_id)
            record = next(
                (c for c in station["calls"] if c["conversationId"] == conversation_id), None
            )
            timing = phone.timing(conversation_id)
            if (
                record is not None
                and record["firstAgentRtpAt"] is not None
                and timing is not None
                and timing.first_rtp_at is not None
            ):
                return record, timing
            await asyncio.sleep(0.05)


def _iso(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def _ms(delta: timedelta) -> float:
    return delta.total_seconds() * 1000


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "n": len(ordered)}


async def _latencies(*, rtt: float, persistent: bool) -> dict[str, Any]:
    """Place CALLS calls to one agent; return two-way-audio latencies in ms."""
    async with (
        sandbox_process(
            agents=1, persistent_connections=persistent, media_delay=rtt / 2, media_relay=True
        ) as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
        TcpDelayProxy(
            ("127.0.0.1", int(base_url.rsplit(":", 1)[1])), one_way_delay=rtt / 2
        ) as proxy,
    ):
        agent_id = (await _admin(http, "GET", "/sandbox/state"))["agents"][0]["id"]
        api_base = f"http://127.0.0.1:{proxy.port}"
        async with phone_for(base_url, api_base, agent_id) as phone:
            rows: list[dict[str, Any]] = []
            failures: list[dict[str, Any]] = []
            # one warm-up call: for the persistent run it sets the connection up
            for index in range(CALLS + 1):
                placed = await _admin(
                    http, "POST", "/sandbox/calls", {"agentId": agent_id, "auto": True}
                )
                conversation_id = placed["conversationId"]
                try:
                    record, timing = await _measured(http, phone, agent_id, conversation_id)
                except TimeoutError:
                    station = await _station(http, agent_id)
                    failures.append({"index": index, "edge": station["connection"]})
                    print(f"   call {index} not measured: {failures[-1]}", flush=True)
                    continue
                alerting = _iso(record["alertingAt"])
                edge_rtp = _iso(record["firstAgentRtpAt"])
                assert alerting is not None
                assert edge_rtp is not None
                # The call reaches the phone as the alerting event or, for a first call, the
                # propose: whichever came first (answered_at is when we proceeded or PATCHed).
                seen = min(t for t in (timing.alerting_seen_at, timing.answered_at) if t)
                phone_rtp = timing.first_rtp_at
                two_way = max(edge_rtp, phone_rtp)
                if index > 0:
                    rows.append(
                        {
                            "two_way_ms": _ms(two_way - seen),
                            "two_way_from_platform_ms": _ms(two_way - alerting),
                            "alerting_flight_ms": _ms(seen - alerting),
                            "to_agent_ms": _ms(phone_rtp - seen),
                            "to_edge_ms": _ms(edge_rtp - seen),
                            "over_existing": record["overExistingConnection"],
                        }
                    )
                await _wait_state(
                    phone,
                    ConnectionState.PERSISTED if persistent else ConnectionState.DISCONNECTED,
                )
                # A breath between calls, as an agent takes: it also keeps the last packets of
                # this call from being counted as the first of the next.
                await asyncio.sleep(0.2)
            station = await _station(http, agent_id)
    return {
        "two_way_ms": _percentiles([r["two_way_ms"] for r in rows]),
        "two_way_from_platform_alerting_ms": _percentiles(
            [r["two_way_from_platform_ms"] for r in rows]
        ),
        "alerting_flight_ms": _percentiles([r["alerting_flight_ms"] for r in rows]),
        "caller_audio_at_agent_ms": _percentiles([r["to_agent_ms"] for r in rows]),
        "agent_audio_at_edge_ms": _percentiles([r["to_edge_ms"] for r in rows]),
        "calls_over_existing_connection": sum(r["over_existing"] for r in rows),
        "calls_not_measured": failures,
        "peer_connections_created": station["peerConnectionsCreated"],
        "dtls_handshakes": station["dtlsHandshakes"],
    }


async def _dead_media() -> dict[str, Any]:
    """Seconds from blackholing the media path to the phone reporting media_failure."""
    results: dict[str, list[float]] = {"between_calls": [], "mid_call": []}
    async with (
        sandbox_process(
            agents=1, media_relay=True, talk_seconds=60, accept_off_queue=True
        ) as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
    ):
        agent_id = (await _admin(http, "GET", "/sandbox/state"))["agents"][0]["id"]
        for trial in range(6):
            mid_call = trial % 2 == 1
            async with phone_for(base_url, base_url, agent_id) as phone:
                # accept_off_queue: the connection comes up at login, with no call on it
                await _wait_state(phone, ConnectionState.PERSISTED)
                if mid_call:
                    await _admin(
                        http, "POST", "/sandbox/calls", {"agentId": agent_id, "auto": True}
                    )
                    await _wait_state(phone, ConnectionState.ACTIVE_CALL)
                await asyncio.sleep(2.0)  # settled: RTP (mid-call) or only RTCP (between)
                downs: list[float] = []

                async def watch(target: Softphone = phone, sink: list[float] = downs) -> None:
                    async for update in target.updates():
                        if (
                            isinstance(update, PersistentConnectionDown)
                            and update.reason is DownReason.MEDIA_FAILURE
                        ):
                            sink.append(time.monotonic())
                            return

                watcher = asyncio.create_task(watch())
                await asyncio.sleep(0)
                cut = time.monotonic()
                await _admin(
                    http,
                    "POST",
                    "/sandbox/faults",
                    {"kind": "media_blackhole", "agentId": agent_id, "on": True},
                )
                await asyncio.wait_for(watcher, 15)
                results["mid_call" if mid_call else "between_calls"].append(downs[0] - cut)
                # the phone told the platform (signalling still works); the network comes back,
                # and the next login sets up anew
                await _admin(
                    http,
                    "POST",
                    "/sandbox/faults",
                    {"kind": "media_blackhole", "agentId": agent_id, "on": False},
                )
    return {key: [round(v, 2) for v in values] for key, values in results.items()}


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def _idle_cost() -> dict[str, Any]:
    """RSS per idle persistent session, CPU of IDLE_SESSIONS idle sessions (this process only)."""
    async with (
        sandbox_process(agents=IDLE_SESSIONS, accept_off_queue=True) as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
    ):
        agents = [a["id"] for a in (await _admin(http, "GET", "/sandbox/state"))["agents"]]
        # one session first, so imports, codecs and thread pools are not billed to the rest
        async with contextlib.AsyncExitStack() as stack:
            first = await stack.enter_async_context(phone_for(base_url, base_url, agents[0]))
            await _wait_state(first, ConnectionState.PERSISTED)
            await asyncio.sleep(2)
            before = _rss_mb()
            phones = [
                await stack.enter_async_context(phone_for(base_url, base_url, agent_id))
                for agent_id in agents[1:]
            ]
            for phone in phones:
                await _wait_state(phone, ConnectionState.PERSISTED)
            await asyncio.sleep(3)
            after = _rss_mb()
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu_before = usage.ru_utime + usage.ru_stime
            wall_before = time.monotonic()
            await asyncio.sleep(10)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (usage.ru_utime + usage.ru_stime - cpu_before) / (time.monotonic() - wall_before)
            states = [p.status.connection for p in [first, *phones]]
    return {
        "sessions": IDLE_SESSIONS,
        "all_persisted": all(s is ConnectionState.PERSISTED for s in states),
        "rss_mb_per_session": round((after - before) / (IDLE_SESSIONS - 1), 2),
        "cpu_percent_of_one_core": round(cpu * 100, 2),
    }


def _ratio(fresh: dict[str, Any], persistent: dict[str, Any], key: str) -> float:
    return round(float(fresh[key]["p50"]) / max(float(persistent[key]["p50"]), 0.1), 2)


async def run() -> dict[str, Any]:
    latency: dict[str, Any] = {}
    goals: list[dict[str, Any]] = []
    for rtt in RTTS:
        label = f"rtt_{round(rtt * 1000)}ms"
        persistent = await _latencies(rtt=rtt, persistent=True)
        fresh = await _latencies(rtt=rtt, persistent=False)
        latency[label] = {"persistent": persistent, "fresh": fresh}
        budget = 1.5 * rtt * 1000 + 25
        p99 = persistent["two_way_ms"]["p99"]
        goals.append(
            {
                "name": f"persistent p99 two-way audio at {label} (ms)",
                "measured": p99,
                "goal": f"<= {budget:g}",
                "met": p99 <= budget,
            }
        )
        ratio = _ratio(fresh, persistent, "two_way_ms")
        latency[label]["fresh_over_persistent_p50"] = ratio
        latency[label]["fresh_over_persistent_p50_from_platform_alerting"] = _ratio(
            fresh, persistent, "two_way_from_platform_alerting_ms"
        )
        print(
            f"   {label}: persistent {persistent['two_way_ms']} fresh {fresh['two_way_ms']} "
            f"ratio {ratio}",
            flush=True,
        )
        if rtt == 0.150:
            goals.append(
                {
                    "name": "fresh/persistent p50 at 150 ms RTT",
                    "measured": ratio,
                    "goal": ">= 4",
                    "met": ratio >= 4,
                }
            )
    dead = await _dead_media()
    worst = max(dead["between_calls"] + dead["mid_call"])
    goals.append(
        {
            "name": "dead media path detected (s, worst)",
            "measured": worst,
            "goal": "<= 3",
            "met": worst <= 3,
        }
    )
    idle = await _idle_cost()
    goals.append(
        {
            "name": "RSS per idle persistent session (MB)",
            "measured": idle["rss_mb_per_session"],
            "goal": "<= 5",
            "met": idle["rss_mb_per_session"] <= 5,
        }
    )
    goals.append(
        {
            "name": f"CPU of {IDLE_SESSIONS} idle persistent sessions (% of one core)",
            "measured": idle["cpu_percent_of_one_core"],
            "goal": "< 2",
            "met": idle["cpu_percent_of_one_core"] < 2,
        }
    )
    return {
        "calls_per_case": CALLS,
        "latency": latency,
        "dead_media_seconds": dead,
        "idle": idle,
        "goals": goals,
    }
