"""Load: one ``crmphone run`` following 1,000 agents at 50 calls/s → ``bench/results/load.json``.

The house, each part in its own process so each pays for itself:

* a sandbox platform with ``AGENTS`` agents and Genesys Cloud's limits (1,000 topics a channel,
  20 channels a client, 300 requests a minute);
* the connector, ``crmphone run`` as users run it, following every agent: four topics each
  (calls, persistent connection, presence, routing status), spread over channels of at most
  1,000 topics — checked from the sandbox's ``/sandbox/state``;
* this process: a minimal HTTP receiver for the webhook adapter's call logs (the cheapest real
  adapter), which stamps each write as it arrives, and the calls, placed through
  ``POST /sandbox/calls`` with ``auto: true`` at ``RATE`` a second, round robin over the agents.

Phases: idle (following, no calls: the same-run baseline, ``IDLE_SECONDS``), loaded (``RATE``
calls a second for ``SECONDS``), drain (until every call's final log arrived), after (a few quiet
seconds). The connector's ``/metrics`` is sampled every second all along: RSS, CPU, open
descriptors, sockets, event-loop tasks.

Measured: the connector's resources in each phase; the time from the platform's event to the CRM
write being sent (p50/p90/p99); calls placed against calls whose final log arrived (lost must be
0); duplicates (one write key with two different bodies, or more records for a call than it has
stages: must be 0). The results follow the schema bench/report.py reads, plus ``details``: CPU of
the sandbox and this process beside the connector's, writes and repeats, drain time. Scale with ``CRMPHONE_LOAD_AGENTS``, ``CRMPHONE_LOAD_RATE``,
``CRMPHONE_LOAD_SECONDS`` and ``CRMPHONE_LOAD_IDLE_SECONDS`` for a quick run.

:class:`House`, :class:`Sampler` and :func:`analyse` are shared with :mod:`bench.soak`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import attrs
import h11
import httpx

from bench._processes import Child, connector_child, cpu_seconds, sandbox_child

AGENTS = int(os.environ.get("CRMPHONE_LOAD_AGENTS", "1000"))
RATE = float(os.environ.get("CRMPHONE_LOAD_RATE", "50"))
SECONDS = float(os.environ.get("CRMPHONE_LOAD_SECONDS", "60"))
IDLE_SECONDS = float(os.environ.get("CRMPHONE_LOAD_IDLE_SECONDS", "15"))

SAMPLE_EVERY = 1.0
SETTLE_SECONDS = 3.0
AFTER_SECONDS = 5.0
DRAIN_LIMIT = 180.0
# A short call, so that a minute of load is many whole calls: every stage of each is written.
RING_SECONDS = 1.0
TALK_SECONDS = 3.0
WRAPUP_SECONDS = 1.0
MAX_TOPICS_PER_CHANNEL = 1000
STAGES = ("connected", "ended", "wrapped_up")
P99_BOUND_MS = 250.0
"""The goal for p99 event → write. A write waits for the outbox's commit of its event, a free
delivery slot (4 per CRM), the store's read of the log and the POST. Measured on 2 shared cores:
p99 33 to 62 ms over several runs at 50 calls/s, 182 ms at 100 calls/s. 250 ms is four times the
worst 50 calls/s run, so a noisy machine still meets it, while a connector that falls behind (its
notification backlog, and the latency with it, then grows without bound) fails it within
seconds. A person looking at the CRM does not notice a quarter of a second."""


# ---------------------------------------------------------------------------------------------
# The receiver


@attrs.frozen
class Arrival:
    """One request as the receiver got it: when its head was read, its key, its raw body."""

    at: float
    key: str | None
    body: bytes


class CallLogReceiver:
    """A webhook endpoint that answers 201 to every POST and keeps each arrival, stamped.

    Minimal on purpose (h11 over asyncio streams, no framework, bodies parsed only afterwards):
    the time it takes is time added to the measured event → write latency.
    """

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """The endpoint's URL."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.close()
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        connection = h11.Connection(h11.SERVER)
        at, key, body = 0.0, None, bytearray()
        try:
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Request):
                    at, body = time.time(), bytearray()
                    key = next(
                        (v.decode() for n, v in event.headers if n == b"idempotency-key"), None
                    )
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    self.arrivals.append(Arrival(at, key, bytes(body)))
                    headers = [("content-type", "application/json"), ("content-length", "2")]
                    writer.write(connection.send(h11.Response(status_code=201, headers=headers)))
                    writer.write(connection.send(h11.Data(data=b"{}")))
                    writer.write(connection.send(h11.EndOfMessage()))
                    await writer.drain()
                    if (
                        connection.our_state is not h11.DONE
                        or connection.their_state is not h11.DONE
                    ):
                        break
                    connection.start_next_cycle()
                else:  # ConnectionClosed, PAUSED: the client is done with this connection
                    break
        except (h11.ProtocolError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


# ---------------------------------------------------------------------------------------------
# Sampling the connector


@attrs.define
class Sample:
    """The connector's figures at ``t`` seconds into the run (CPU since the previous sample)."""

    t: float
    rss_mb: float
    cpu_seconds: float
    cpu_percent: float
    open_fds: int
    tasks: int
    sockets: int
    phase: str
    pending: int
    """Notifications received and not yet stored (the connector's backlog)."""

    def to_json(self) -> dict[str, Any]:
        """The sample as written in the results."""
        return {
            "t": round(self.t, 2),
            "rss_mb": round(self.rss_mb, 2),
            "cpu_percent": round(self.cpu_percent, 1),
            "open_fds": self.open_fds,
            "tasks": self.tasks,
            "sockets": self.sockets,
            "pending": self.pending,
            "phase": self.phase,
        }


def _unlabelled(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


class Sampler:
    """Scrapes the connector's ``/metrics`` every ``every`` seconds, labelling each sample with
    the current :attr:`phase`; :attr:`samples` holds them, :attr:`counters` the last scrape."""

    def __init__(self, health: httpx.AsyncClient, started: float, every: float) -> None:
        self.phase = "startup"
        self.samples: list[Sample] = []
        self.counters: dict[str, float] = {}
        self._health = health
        self._started = started
        self._every = every

    async def _scrape(self) -> str:
        for attempt in range(3):
            try:
                response = await self._health.get("/metrics")
                response.raise_for_status()
            except httpx.TransportError:
                # The server may close an idle keep-alive connection just as it is reused
                # (its timeout and the sampling interval can coincide): a new one will do.
                if attempt == 2:
                    raise
            else:
                return response.text
        raise AssertionError("unreachable")

    async def sample(self) -> Sample:
        """Scrape once now and keep the sample."""
        text = await self._scrape()
        now = time.monotonic()
        values = _unlabelled(text)
        self.counters = values
        cpu = values["process_cpu_seconds_total"]
        percent = 0.0
        if self.samples:
            previous = self.samples[-1]
            elapsed = now - self._started - previous.t
            percent = 100 * (cpu - previous.cpu_seconds) / elapsed if elapsed > 0 else 0.0
        sample = Sample(
            t=now - self._started,
            rss_mb=values["process_resident_memory_bytes"] / 2**20,
            cpu_seconds=cpu,
            cpu_percent=percent,
            open_fds=int(values["process_open_fds"]),
            tasks=int(values["crmphone_asyncio_tasks"]),
            sockets=int(values["crmphone_open_sockets"]),
            phase=self.phase,
            pending=int(values["crmphone_notifications_pending"]),
        )
        self.samples.append(sample)
        return sample

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            began = time.monotonic()
            await self.sample()
            await asyncio.sleep(max(0.0, self._every - (time.monotonic() - began)))

    def of(self, *phases: str) -> list[Sample]:
        """The samples taken in ``phases``."""
        return [s for s in self.samples if s.phase in phases]


def summarise(samples: Sequence[Sample]) -> dict[str, Any]:
    """RSS and descriptors at a phase's start, end and peak, and its CPU (% of one core)."""
    if len(samples) < 2:
        raise RuntimeError("a phase needs at least two samples to be summarised")
    first, last = samples[0], samples[-1]
    cpu = 100 * (last.cpu_seconds - first.cpu_seconds) / (last.t - first.t)
    return {
        "rss_mb": {
            "start": round(first.rss_mb, 2),
            "end": round(last.rss_mb, 2),
            "max": round(max(s.rss_mb for s in samples), 2),
        },
        "cpu_percent_of_one_core": round(cpu, 1),
        "open_fds": {
            "start": first.open_fds,
            "end": last.open_fds,
            "max": max(s.open_fds for s in samples),
        },
        "notifications_pending_max": max(s.pending for s in samples),
    }


# ---------------------------------------------------------------------------------------------
# The house


@attrs.frozen
class Placement:
    """Calls placed: their conversation ids, failures, and how long placing took."""

    conversation_ids: tuple[str, ...]
    failures: int
    seconds: float

    @property
    def rate(self) -> float:
        """Calls placed a second."""
        return len(self.conversation_ids) / self.seconds if self.seconds > 0 else 0.0


@attrs.frozen
class Topics:
    """The connector's channels on the platform, as the sandbox sees them."""

    channels: int
    topics: int
    most_on_one_channel: int


class House:
    """Sandbox, receiver and connector, started by ``async with House(agents=…)``.

    :meth:`place_calls` makes the load, :meth:`wait_logged` waits for the final logs.
    """

    def __init__(self, *, agents: int, sample_every: float = SAMPLE_EVERY) -> None:
        self.agents = agents
        self.receiver = CallLogReceiver()
        self.started = time.monotonic()
        self.sandbox: Child | None = None
        self.connector: Child | None = None
        self.agent_ids: tuple[str, ...] = ()
        self._sample_every = sample_every
        self._sampler: Sampler | None = None
        self._sampling: asyncio.Task[None] | None = None
        self._next_agent = 0
        self._logged: set[str] = set()
        self._parsed = 0
        self._stack = contextlib.AsyncExitStack()

    @property
    def sampler(self) -> Sampler:
        """The connector's sampler (running while the house is up)."""
        assert self._sampler is not None
        return self._sampler

    async def __aenter__(self) -> Self:
        stack = self._stack
        try:
            self.sandbox = await stack.enter_async_context(
                sandbox_child(
                    agents=self.agents,
                    ring_seconds=RING_SECONDS,
                    talk_seconds=TALK_SECONDS,
                    wrapup_seconds=WRAPUP_SECONDS,
                    # Genesys Cloud's production values: the connector meets the real limits.
                    heartbeat_interval=30.0,
                    rate_limit_per_minute=300,
                    max_topics_per_channel=MAX_TOPICS_PER_CHANNEL,
                    max_channels_per_client=20,
                )
            )
            await stack.enter_async_context(self.receiver)
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crmphone-")))
            config = directory / "connector.toml"
            config.write_text(
                f"""
[platform]
kind = "sandbox"
url = "{self.sandbox.url}"

[[adapters]]
name = "webhook"
url = "{self.receiver.url}"

[outbox]
path = "outbox.sqlite3"

[log]
level = "warning"
"""
            )
            self.admin = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=self.sandbox.url,
                    timeout=60,
                    limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
                )
            )
            self.connector = await stack.enter_async_context(connector_child(config))
            health = await stack.enter_async_context(
                httpx.AsyncClient(base_url=self.connector.url, timeout=30)
            )
            async with asyncio.timeout(60):
                while (await health.get("/readyz")).status_code != 200:
                    await asyncio.sleep(0.2)
            state = (await self.admin.get("/sandbox/state")).json()
            self.agent_ids = tuple(agent["id"] for agent in state["agents"])
            self._sampler = Sampler(health, self.started, self._sample_every)
            self._sampling = asyncio.create_task(self._sampler.run(), name="bench-sampler")
            stack.push_async_callback(_cancel, self._sampling)
        except BaseException:
            await stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def topics(self) -> Topics:
        """The connector's channels and topics, from ``/sandbox/state``."""
        state = (await self.admin.get("/sandbox/state")).json()
        counts = [len(c["topics"]) for c in state["channels"] if c["topics"]]
        return Topics(len(counts), sum(counts), max(counts, default=0))

    async def place_calls(self, rate: float, seconds: float) -> Placement:
        """Place ``rate`` automatic calls a second for ``seconds``, round robin over the agents.

        Each call is due at its slot; a slow platform makes the achieved rate lower, never the
        schedule tighter. Returns once every call was placed (or refused).
        """
        count = max(1, round(rate * seconds))
        # Round robin gives each agent a call every agents/rate seconds: longer than a call.
        if len(self.agent_ids) / rate <= RING_SECONDS + TALK_SECONDS + WRAPUP_SECONDS + 1:
            raise ValueError(f"{len(self.agent_ids)} agents are too few for {rate:g} calls/s")
        ids: list[str] = []
        failures = 0
        slots = asyncio.Semaphore(64)

        async def place(agent_id: str) -> None:
            nonlocal failures
            try:
                response = await self.admin.post(
                    "/sandbox/calls", json={"agentId": agent_id, "auto": True}
                )
                response.raise_for_status()
                ids.append(response.json()["conversationId"])
            except httpx.HTTPError:
                failures += 1
            finally:
                slots.release()

        began = time.monotonic()
        tasks = []
        for index in range(count):
            delay = began + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            agent_id = self.agent_ids[self._next_agent % len(self.agent_ids)]
            self._next_agent += 1
            tasks.append(asyncio.create_task(place(agent_id)))
        await asyncio.gather(*tasks)
        self.check()
        # Placing ends with the last answer; never shorter than the schedule itself.
        elapsed = max(time.monotonic() - began, seconds)
        return Placement(tuple(ids), failures, elapsed)

    def check(self) -> None:
        """Raise what stopped the sampler, if it stopped (the connector's /metrics failed)."""
        if self._sampling is not None and self._sampling.done():
            self._sampling.result()
            raise RuntimeError("the sampler stopped")

    def logged(self) -> set[str]:
        """Conversation ids whose final (wrapped-up) log has arrived so far."""
        arrivals = self.receiver.arrivals
        for arrival in arrivals[self._parsed :]:
            log = _log_of(arrival)
            if log is not None and log.get("stage") == "wrapped_up":
                self._logged.add(str(log["conversationId"]))
        self._parsed = len(arrivals)
        return self._logged

    async def wait_logged(self, conversation_ids: Iterable[str], within: float) -> bool:
        """Wait until every call's final log arrived; False after ``within`` seconds."""
        wanted = set(conversation_ids)
        deadline = time.monotonic() + within
        while not wanted <= self.logged():
            self.check()
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.25)
        return True


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# ---------------------------------------------------------------------------------------------
# What arrived


def _log_of(arrival: Arrival) -> dict[str, Any] | None:
    try:
        body = json.loads(arrival.body)
    except ValueError:
        return None
    log = body.get("log") if isinstance(body, dict) else None
    return log if isinstance(log, dict) else None


def percentiles(values: Sequence[float]) -> dict[str, float | int]:
    """n, p50, p90 and p99 of ``values`` (nearest rank), rounded to 0.1."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "p50": math.nan, "p90": math.nan, "p99": math.nan}

    def rank(q: float) -> float:
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 1)

    return {"n": len(ordered), "p50": rank(0.50), "p90": rank(0.90), "p99": rank(0.99)}


@attrs.frozen
class Analysis:
    """What the receiver's arrivals say about the calls placed."""

    calls_logged: int
    lost: int
    duplicates: int
    repeats: int
    writes: int
    latencies_ms: tuple[float, ...]
    unexpected_calls: int

    def event_to_write_ms(self) -> dict[str, float | int]:
        """n, p50, p90, p99 of the event → write times."""
        return percentiles(self.latencies_ms)


def analyse(arrivals: Sequence[Arrival], placed: Iterable[str]) -> Analysis:
    """Match the writes that arrived against the calls placed.

    * logged: a call whose wrapped-up log arrived; lost: placed and not logged.
    * duplicates: a write key that arrived with two different bodies (one write said two
      things), or a call with more distinct writes than it has stages.
    * repeats: the same write arriving again with the same body (a retry: harmless).
    * latency, per write (its first arrival): arrival minus the platform's time of the event
      that write reflects — ``connectedAt`` for a connected-stage write, ``endedAt`` for an
      ended one. Both are set by the sandbox from its wall clock at the moment the call's state
      changed, in the same step that publishes the event; the arrival is stamped from the same
      host's wall clock as soon as the request's head is read. So the difference is the whole
      path — notification, parsing, call state, the outbox's commit, the queue, the POST — plus
      sub-millisecond loopback transit and the receiver's own scheduling, which only make it
      larger: an honest upper bound on "event to write sent". Wrap-up writes are left out: the
      log carries the wrap-up's duration in whole seconds, not its time.
    """
    bodies: dict[str, set[bytes]] = {}
    first: dict[str, tuple[float, dict[str, Any]]] = {}
    by_call: dict[str, set[str]] = {}
    logged: set[str] = set()
    for arrival in arrivals:
        log = _log_of(arrival)
        if log is None:
            continue
        write_key = str(log.get("writeKey"))
        bodies.setdefault(write_key, set()).add(arrival.body)
        first.setdefault(write_key, (arrival.at, log))
        by_call.setdefault(str(log.get("key")), set()).add(write_key)
        if log.get("stage") == "wrapped_up":
            logged.add(str(log["conversationId"]))
    latencies: list[float] = []
    for at, log in first.values():
        stamp = {"connected": log.get("connectedAt"), "ended": log.get("endedAt")}.get(
            str(log.get("stage"))
        )
        if stamp:
            latencies.append(1000 * (at - datetime.fromisoformat(stamp).timestamp()))
    placed_ids = set(placed)
    duplicates = sum(len(b) > 1 for b in bodies.values()) + sum(
        max(0, len(keys) - len(STAGES)) for keys in by_call.values()
    )
    return Analysis(
        calls_logged=len(logged & placed_ids),
        lost=len(placed_ids - logged),
        duplicates=duplicates,
        repeats=len(arrivals) - len(bodies),
        writes=len(bodies),
        latencies_ms=tuple(latencies),
        unexpected_calls=len(logged - placed_ids),
    )


def goal(name: str, measured: Any, wanted: str, met: bool) -> dict[str, Any]:
    """One entry of a result's ``goals``."""
    return {"name": name, "goal": wanted, "measured": measured, "met": bool(met)}


# ---------------------------------------------------------------------------------------------
# The benchmark


async def measure(
    *, agents: int, rate: float, seconds: float, idle_seconds: float
) -> dict[str, Any]:
    """Run the phases once and return the results (the schema in the module docstring)."""
    async with House(agents=agents) as house:
        sampler = house.sampler
        await asyncio.sleep(SETTLE_SECONDS)  # start-up's last requests and allocations
        topics = await house.topics()
        print(
            f"   following {agents} agents: {topics.topics} topics on {topics.channels} "
            f"channels (at most {topics.most_on_one_channel} on one)",
            flush=True,
        )
        sampler.phase = "idle"
        await sampler.sample()
        await asyncio.sleep(idle_seconds)
        await sampler.sample()
        sampler.phase = "loaded"
        house_cpu = {
            "sandbox": cpu_seconds(_pid(house.sandbox)),
            "bench": cpu_seconds(),
        }
        loaded_started = time.monotonic()
        placement = await house.place_calls(rate, seconds)
        await sampler.sample()
        loaded_seconds = time.monotonic() - loaded_started
        house_percent = {
            "sandbox": round(
                100 * (cpu_seconds(_pid(house.sandbox)) - house_cpu["sandbox"]) / loaded_seconds,
                1,
            ),
            "bench": round(100 * (cpu_seconds() - house_cpu["bench"]) / loaded_seconds, 1),
        }
        print(
            f"   placed {len(placed := placement.conversation_ids)} calls in "
            f"{placement.seconds:.1f} s ({placement.rate:.1f}/s); draining",
            flush=True,
        )
        sampler.phase = "drain"
        drained = await house.wait_logged(placed, DRAIN_LIMIT)
        drain_seconds = time.monotonic() - loaded_started - loaded_seconds
        sampler.phase = "after"
        await asyncio.sleep(AFTER_SECONDS)
        await sampler.sample()
        counters = dict(sampler.counters)
    analysis = analyse(house.receiver.arrivals, placed)
    idle = summarise(sampler.of("idle"))
    loaded = summarise(sampler.of("loaded"))
    latency = analysis.event_to_write_ms()
    p99 = latency["p99"]
    achieved = round(placement.rate, 2)
    return {
        "agents": agents,
        "channels": topics.channels,
        "topics": topics.topics,
        "calls_per_second_target": rate,
        "calls_per_second_achieved": achieved,
        "duration_s": round(placement.seconds, 1),
        "calls_placed": len(placed),
        "calls_logged": analysis.calls_logged,
        "lost": analysis.lost,
        "duplicates": analysis.duplicates,
        "event_to_write_ms": latency,
        "loaded": loaded,
        "idle_baseline": idle,
        "samples": [s.to_json() for s in sampler.samples],
        "details": {
            "topics_on_busiest_channel": topics.most_on_one_channel,
            "calls_refused_by_sandbox": placement.failures,
            "drained": drained,
            "drain_seconds": round(drain_seconds, 1),
            "writes": analysis.writes,
            "writes_repeated": analysis.repeats,
            "unexpected_calls": analysis.unexpected_calls,
            "dead_letters": counters.get("crmphone_dead_letters_total", 0.0),
            "cpu_percent_of_one_core_loaded": {
                "connector": loaded["cpu_percent_of_one_core"],
                **house_percent,
            },
            "call_seconds": {
                "ring": RING_SECONDS,
                "talk": TALK_SECONDS,
                "wrapup": WRAPUP_SECONDS,
            },
        },
        "goals": [
            goal("calls lost", analysis.lost, "== 0", analysis.lost == 0 and drained),
            goal("CRM writes duplicated", analysis.duplicates, "== 0", analysis.duplicates == 0),
            goal(
                f"calls/s achieved (target {rate:g})",
                achieved,
                f">= {0.95 * rate:g}",
                achieved >= 0.95 * rate,
            ),
            goal(
                "p99 platform event -> CRM write sent (ms)",
                p99,
                f"<= {P99_BOUND_MS:g}",
                p99 <= P99_BOUND_MS,
            ),
            goal(
                "topics on one channel (max)",
                topics.most_on_one_channel,
                f"<= {MAX_TOPICS_PER_CHANNEL}",
                0 < topics.most_on_one_channel <= MAX_TOPICS_PER_CHANNEL,
            ),
        ],
    }


def _pid(child: Child | None) -> int:
    assert child is not None
    return child.pid


async def run() -> dict[str, Any]:
    """The benchmark at the configured scale (``AGENTS``, ``RATE``, ``SECONDS``)."""
    return await measure(agents=AGENTS, rate=RATE, seconds=SECONDS, idle_seconds=IDLE_SECONDS)
