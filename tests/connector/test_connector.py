"""The connector end to end: sandbox platform → channel → calls → outbox → adapter."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from crmphone.adapters import CrmRecord, LogStage
from crmphone.config import ConnectorConfig, parse_config
from crmphone.connector import Connector
from crmphone.errors import CrmRetryableError
from crmphone.events import (
    ConnectionState,
    ConnectionStateChanged,
    PresenceChanged,
    RoutingStatus,
    RoutingStatusChanged,
)
from crmphone.sandbox import SandboxServer
from crmphone.testing import TEST_CLIENT_ID, TEST_CLIENT_SECRET, fast_sandbox_config
from crmphone.testing.connector import run_connector_until
from crmphone.testing.disk import set_outbox_read_only
from crmphone.testing.recording import RecordingAdapter

ENVIRON = {"CRMPHONE_CLIENT_ID": TEST_CLIENT_ID, "CRMPHONE_CLIENT_SECRET": TEST_CLIENT_SECRET}


def connector_config(sandbox: SandboxServer, tmp_path: Path, extra: str = "") -> ConnectorConfig:
    text = f"""
[platform]
kind = "sandbox"
url = "{sandbox.base_url}"

[outbox]
path = "outbox.sqlite3"
initial_delay = 0.05
max_delay = 0.2
{extra}
"""
    return parse_config(text, base_dir=tmp_path, environ=ENVIRON)


async def run_until(
    config: ConnectorConfig,
    adapter: RecordingAdapter,
    scenario: Callable[[Connector, Any, Any], Awaitable[None]],
    **options: Any,
) -> None:
    """Run the connector with ``adapter`` as its only adapter while ``scenario`` plays."""
    await run_connector_until(config, scenario, within=30, adapters={"crm": adapter}, **options)


async def finished_logs(adapter: RecordingAdapter, count: int, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while sum(log.stage is LogStage.WRAPPED_UP for log in adapter.logs.values()) < count:
            adapter.changed.clear()
            await adapter.changed.wait()


async def test_sandbox_calls_become_one_finished_log_each(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """Three calls to three agents: each popped once and logged once per stage, in order."""
    adapter = RecordingAdapter()
    platform = sandbox.sandbox

    async def scenario(connector: Connector, health: Any, _: Any) -> None:
        for agent in platform.agents:
            await platform.calls.place_inbound(agent.id, ani="+15551230042")
        await finished_logs(adapter, len(platform.agents))

    await run_until(connector_config(sandbox, tmp_path), adapter, scenario)
    assert len(adapter.logs) == len(platform.agents)
    assert len(adapter.of("screen_pop")) == len(platform.agents)
    by_call: dict[str, list[LogStage]] = {}
    for write in adapter.writes:
        by_call.setdefault(write.key, []).append(write.stage)
    for stages in by_call.values():
        assert stages == sorted(stages)
        assert len(stages) == len(set(stages))  # no stage written twice
    assert {log.customer_number for log in adapter.logs.values()} == {"+15551230042"}


async def test_calls_made_while_the_connector_was_down_are_caught_up(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """A restart reads the conversations of the downtime and logs each of them once."""
    config = connector_config(sandbox, tmp_path)
    platform = sandbox.sandbox
    agent = platform.agents[0].id

    first = RecordingAdapter()

    async def one_call(connector: Connector, health: Any, _: Any) -> None:
        await platform.calls.place_inbound(agent)
        await finished_logs(first, 1)

    await run_until(config, first, one_call)

    # The connector is down: two calls come and go.
    missed = [await platform.calls.place_inbound(agent) for _ in range(2)]
    for conversation_id in missed:
        await platform.calls.wait_closed(conversation_id)

    second = RecordingAdapter()

    async def catch_up(connector: Connector, health: Any, _: Any) -> None:
        await finished_logs(second, 2)

    await run_until(config, second, catch_up)
    assert {log.conversation_id for log in second.logs.values()} == set(missed)
    assert all(log.stage is LogStage.WRAPPED_UP for log in second.logs.values())


async def test_health_metrics_and_readiness_follow_the_connector(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """/readyz is 200 once following; /metrics counts the events and writes."""
    adapter = RecordingAdapter()
    platform = sandbox.sandbox

    async def scenario(connector: Connector, health: Any, _: Any) -> None:
        await platform.calls.place_inbound(platform.agents[0].id)
        await finished_logs(adapter, 1)
        async with httpx.AsyncClient(base_url=health.url) as http:
            assert (await http.get("/readyz")).status_code == 200
            async with asyncio.timeout(5):
                while True:
                    text = (await http.get("/metrics")).text
                    if "crmphone_events_in_total 4" in text and re.search(
                        r'crmphone_writes_done_total\{adapter="crm"\} [1-3]', text
                    ):
                        break
                    await asyncio.sleep(0.1)
            assert 'crmphone_dead_letters_total{adapter="crm"} 0' in text

    await run_until(connector_config(sandbox, tmp_path), adapter, scenario, health_port=0)


async def test_the_platforms_persistent_connection_state_reaches_the_adapter(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """persistentconnection events become status events; a repeated state is not sent again."""
    adapter = RecordingAdapter()
    platform = sandbox.sandbox
    agent = platform.agents[0].id
    topic = f"v2.users.{agent}.persistentconnection"

    async def scenario(connector: Connector, health: Any, _: Any) -> None:
        # One at a time: a newer state replaces one the adapter has not been shown yet.
        plays = [("PERSISTED", 1), ("PERSISTED", 1), ("ACTIVE_CALL", 2), ("bogus", 2)]
        plays.append(("DISCONNECTED", 3))
        for state, shown in plays:
            platform.publish(topic, {"userId": agent, "persistentState": state})
            await adapter.wait_for("on_connection_event", shown)
        await asyncio.sleep(0.05)  # nothing more may come (the repeat and "bogus" made none)

    await run_until(connector_config(sandbox, tmp_path), adapter, scenario)
    changes = [call.event for call in adapter.of("on_connection_event")]
    assert all(isinstance(change, ConnectionStateChanged) for change in changes)
    assert [(c.previous, c.state) for c in changes if isinstance(c, ConnectionStateChanged)] == [
        (ConnectionState.IDLE, ConnectionState.PERSISTED),
        (ConnectionState.PERSISTED, ConnectionState.ACTIVE_CALL),
        (ConnectionState.ACTIVE_CALL, ConnectionState.DISCONNECTED),
    ]


async def test_click_to_dial_links_the_log_to_the_record_it_came_from(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """An adapter's dial goes through the connector's dialer; the call's log links the record."""
    adapter = RecordingAdapter()
    platform = sandbox.sandbox
    agent = platform.agents[0].id
    record = CrmRecord("Account", "001X", "Acme")

    async def dialer(agent_id: str, number: str) -> str:
        return await platform.calls.place_outbound(agent_id, number)

    async def scenario(connector: Connector, health: Any, _: Any) -> None:
        conversation_id = await connector.dial(
            "+15559870000", agent_id=agent, record=record, adapter="crm"
        )
        await finished_logs(adapter, 1)
        assert {log.conversation_id for log in adapter.logs.values()} == {conversation_id}

    await run_until(connector_config(sandbox, tmp_path), adapter, scenario, dialer=dialer)
    (log,) = adapter.logs.values()
    assert log.record == record
    assert log.direction.value == "outbound"


def test_the_connector_log_never_shows_the_client_secret(tmp_path: Path) -> None:
    """Whatever logs a message with the secret in it, the connector's log shows it redacted."""
    import io
    import logging

    from crmphone.service import configure_logging

    secret = "s3cr3t-value-42"
    config = parse_config(
        '[platform]\nkind = "sandbox"\nurl = "http://127.0.0.1:9"\n[log]\nformat = "json"\n',
        base_dir=tmp_path,
        environ={"CRMPHONE_CLIENT_ID": "id", "CRMPHONE_CLIENT_SECRET": secret},
    )
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging(config, stream=stream)
        logging.getLogger("some.library").warning("token request with secret=%s", secret)
    finally:
        root.handlers[:], root.level = saved
    output = stream.getvalue()
    assert secret not in output
    assert "[redacted]" in output
    assert secret not in repr(config)


async def test_a_crm_outage_delays_logs_but_never_the_events(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """While the CRM fails every write, calls' events are still committed as they happen; once it
    is back, every call gets its final log, once."""
    adapter = RecordingAdapter()
    adapter.fail_next(
        "log_call", *[CrmRetryableError("503 Service Unavailable") for _ in range(10)]
    )
    outage = adapter.stall("lookup_caller")  # and lookups hang meanwhile
    platform = sandbox.sandbox

    async def scenario(connector: Connector, health: Any, _: Any) -> None:
        placed = [await platform.calls.place_inbound(agent.id) for agent in platform.agents]
        for conversation_id in placed:
            await platform.calls.wait_closed(conversation_id)
        # Every call's events reached the outbox while the CRM was down.
        async with asyncio.timeout(5):
            while connector.outbox.stats.events_in < 4 * len(placed):
                await asyncio.sleep(0.05)
        assert adapter.logs == {}
        outage.set()  # the CRM comes back
        await finished_logs(adapter, len(placed))

    await run_until(connector_config(sandbox, tmp_path), adapter, scenario)
    assert len(adapter.logs) == len(platform.agents)


async def test_a_backlog_is_stored_in_a_few_commits_not_one_per_notification(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """Notifications that piled up while the outbox's disk refused writes are stored in at most
    two commits once it takes writes again (the held batch, then the backlog), and every call
    is logged once."""
    adapter = RecordingAdapter()
    platform = sandbox.sandbox

    async def scenario(connector: Connector, health: Any, _: Any) -> None:
        stream = connector.stream
        assert stream is not None
        await set_outbox_read_only(connector.outbox, True)
        placed = [await platform.calls.place_inbound(agent.id) for agent in platform.agents]
        for conversation_id in placed:
            await platform.calls.wait_closed(conversation_id)
        async with asyncio.timeout(5):
            while stream.pending() < 2 * len(placed):
                await asyncio.sleep(0.05)
        backlog, seen = stream.pending(), connector.stats.notifications
        commits = connector.stats.commits
        await set_outbox_read_only(connector.outbox, False)
        await finished_logs(adapter, len(placed))
        later = connector.stats.notifications - seen - backlog  # arrived after the disk healed
        assert connector.stats.commits - commits <= 2 + later, (backlog, later)

    await run_until(connector_config(sandbox, tmp_path), adapter, scenario)
    assert len(adapter.logs) == len(platform.agents)
    assert all(log.stage is LogStage.WRAPPED_UP for log in adapter.logs.values())


async def test_a_live_wrapup_during_a_resync_is_stored_after_the_events_the_resync_found(
    tmp_path: Path,
) -> None:
    """A call starts, is answered and hung up in a gap. The resync finds those events; while it
    re-reads presence, the call's wrap-up arrives live. The wrap-up is stored after the resync's
    events (not before them as an orphan, which the outbox would refuse), so the call is logged
    to its wrap-up."""
    adapter = RecordingAdapter()
    async with SandboxServer(
        fast_sandbox_config(wrapup_seconds=1.0), host="127.0.0.1", port=0
    ) as sandbox:
        platform = sandbox.sandbox
        agent = platform.agents[0].id

        async def scenario(connector: Connector, health: Any, _: Any) -> None:
            entered, release = asyncio.Event(), asyncio.Event()
            get_users = connector.client.get_users

            async def slow_get_users(*args: Any, **kwargs: Any) -> Any:
                entered.set()
                await release.wait()
                return await get_users(*args, **kwargs)

            gap_started = platform.clock.wall()
            platform.faults.silence()  # the gap: what happens now never reaches the connector
            conversation_id = await platform.calls.place_inbound(
                agent, auto=False, alerting_timeout=30.0
            )
            platform.calls.agent_answers(conversation_id)
            platform.calls.agent_hangs_up(conversation_id)  # wrap-up ends in 1 s, live
            platform.faults.unsilence()
            connector.client.get_users = slow_get_users  # type: ignore[method-assign]
            resync = asyncio.create_task(connector.resync(gap_started))
            async with asyncio.timeout(5):
                await entered.wait()
                while not (
                    connector.outbox.stats.anomalies
                    or any(log.stage is LogStage.WRAPPED_UP for log in adapter.logs.values())
                ):
                    await asyncio.sleep(0.02)  # the live wrap-up is taken meanwhile
            release.set()
            assert await resync
            await finished_logs(adapter, 1)
            assert connector.outbox.stats.anomalies == 0

        await run_until(connector_config(sandbox, tmp_path), adapter, scenario)
    (log,) = adapter.logs.values()
    assert log.stage is LogStage.WRAPPED_UP


async def test_presence_and_routing_status_reach_the_adapter_and_gaps_are_caught_up(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """Start reports each agent's presence once; a change arrives live; a change made during a
    gap is found by the resync, once, and a second resync reports nothing."""
    adapter = RecordingAdapter()
    platform = sandbox.sandbox
    agent = platform.agents[0].id
    on_queue = "e08eaf1b-ee47-4fa9-a231-1200e284798f"
    busy = "31fe3bac-dea6-44b7-bed7-47f91660a1a0"

    def presence_events() -> list[PresenceChanged]:
        return [
            call.event
            for call in adapter.of("on_presence_event")
            if isinstance(call.event, PresenceChanged) and call.event.agent_id == agent
        ]

    async def scenario(connector: Connector, health: Any, _: Any) -> None:
        await adapter.wait_for("on_presence_event", 2 * len(platform.agents))
        for publication in platform.world.presence.set_presence(
            agent, on_queue, None, platform.clock.wall()
        ):
            platform.publish(publication.topic, publication.body)
        await adapter.wait_for("on_presence_event", 2 * len(platform.agents) + 2)
        # A gap: the change happens but its events are lost.
        platform.world.presence.set_presence(agent, busy, "back at 3", platform.clock.wall())
        await connector.resync(None)
        await adapter.wait_for("on_presence_event", 2 * len(platform.agents) + 4)
        await connector.resync(None)

    await run_until(connector_config(sandbox, tmp_path), adapter, scenario)
    assert [(e.previous, e.system_presence) for e in presence_events()] == [
        (None, "OFFLINE"),
        ("OFFLINE", "ON_QUEUE"),
        ("ON_QUEUE", "BUSY"),
    ]
    assert presence_events()[-1].message == "back at 3"
    routing = [
        (call.event.previous, call.event.status)
        for call in adapter.of("on_presence_event")
        if isinstance(call.event, RoutingStatusChanged) and call.event.agent_id == agent
    ]
    assert routing == [
        (None, RoutingStatus.OFF_QUEUE),
        (RoutingStatus.OFF_QUEUE, RoutingStatus.IDLE),
        (RoutingStatus.IDLE, RoutingStatus.OFF_QUEUE),
    ]
    assert len(adapter.of("on_presence_event")) == 2 * len(platform.agents) + 4


async def test_presence_can_be_left_unfollowed(sandbox: SandboxServer, tmp_path: Path) -> None:
    """``[agents] presence = false`` subscribes no presence topic and reads no presence."""
    adapter = RecordingAdapter()

    async def scenario(connector: Connector, health: Any, _: Any) -> None:
        assert not any(t.endswith((".presence", ".routingStatus")) for t in connector.topics)
        await connector.resync(None)

    config = connector_config(sandbox, tmp_path, extra="[agents]\npresence = false\n")
    await run_until(config, adapter, scenario)
    assert adapter.of("on_presence_event") == []


async def test_bridge_commands_dial_through_the_connector_and_refuse_phone_commands() -> None:
    """A page's dial goes to Connector.dial with its record and the page's adapter; commands
    that need the phone are refused as unavailable."""
    from datetime import UTC, datetime

    from crmphone.bridge import Answer, CommandError, ConnectedClient, Dial
    from crmphone.connector import BridgeCommands

    dialled: list[tuple[str, str, Any, str]] = []

    class FakeConnector:
        async def dial(self, number: str, *, agent_id: str, record: Any, adapter: str) -> str:
            dialled.append((number, agent_id, record, adapter))
            return "conv-9"

    commands = BridgeCommands(
        FakeConnector(),  # type: ignore[arg-type]
        agent_id="agent-1",
        adapters={"salesforce": "sf-eu"},
    )
    page = ConnectedClient(id="c1", kind="salesforce", origin=None, connected_at=datetime.now(UTC))
    record = CrmRecord("Account", "001A", "Acme")
    result = await commands.handle(Dial("+15550100001", record=record), page)
    assert result == {"conversation_id": "conv-9"}
    assert dialled == [("+15550100001", "agent-1", record, "sf-eu")]
    with pytest.raises(CommandError) as refused:
        await commands.handle(Answer("conv-9"), page)
    assert refused.value.code == "unavailable"
