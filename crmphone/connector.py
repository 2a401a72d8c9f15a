"""The connector: platform events → calls → durable outbox → CRM adapters.

The composition root (the one module that knows all the others): it follows the agents'
conversation topics on the notification channel, turns each notification into call events with
:class:`~crmphone.calls.CallTracker`, and commits them to the :class:`~crmphone.adapters.Outbox`,
whose workers drive the adapters. Each agent's ``persistentconnection`` topic becomes
:class:`~crmphone.events.ConnectionStateChanged` status events for the adapters' "persistent
connection active" indicator, and (unless turned off) their ``presence`` and ``routingStatus``
topics become :class:`~crmphone.events.PresenceChanged` and
:class:`~crmphone.events.RoutingStatusChanged` through :class:`~crmphone.presence.PresenceTracker`.
Commands from the CRM side (click-to-dial) come back through
:meth:`Connector.dial`.

Nothing is lost across gaps: after every reconnect of the channel, and at every start (the outbox
file remembers when the platform was last heard), :meth:`Connector.resync` asks the platform which
conversations the agents had during the gap (analytics detail query) and re-reads them together
with every call still live, and the tracker emits exactly the events that were missed. Copies are
harmless: the outbox refuses an event it already stored. Presence is re-read too (one request per
hundred agents), and only what changed during the gap is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from crmphone._watchers import Watchers
from crmphone.adapters import CrmRecord, Outbox
from crmphone.bridge import (
    Answer,
    Command,
    CommandError,
    ConnectedClient,
    Dial,
    ErrorCode,
    Hangup,
    Hold,
    Mute,
    StopPersistent,
)
from crmphone.calls import CallTracker
from crmphone.clock import Clock, SystemClock
from crmphone.errors import (
    ConfigError,
    InvalidStateError,
    NotFoundError,
    PlatformError,
    StorageError,
)
from crmphone.events import (
    CallEvent,
    ConnectionState,
    ConnectionStateChanged,
    Event,
    PresenceEvent,
)
from crmphone.notifications import (
    ChannelSettings,
    CloseDiagnosis,
    NotificationStream,
    Resync,
    TopicEvent,
)
from crmphone.platform import CallConversation, PlatformClient
from crmphone.presence import PresenceTracker, presence_topics

if TYPE_CHECKING:
    from crmphone.phone import PhoneStatus

__all__ = [
    "AdapterCommands",
    "BridgeCommands",
    "Connector",
    "ConnectorStats",
    "Dialer",
    "PhoneControls",
]

logger = logging.getLogger(__name__)

#: Places a call for an agent and returns its conversation id (the agent's phone does it).
Dialer = Callable[[str, str], Awaitable[str]]

_LAST_HEARD = "platform.last_heard"
# Analytics detail data can trail the live events a little; widen the gap's window by this much.
_GAP_MARGIN = timedelta(seconds=30)
# The platform's persistentState names → ours (UNKNOWN: no connection yet).
_PLATFORM_STATES = {
    "UNKNOWN": ConnectionState.IDLE,
    "PERSISTED": ConnectionState.PERSISTED,
    "ACTIVE_CALL": ConnectionState.ACTIVE_CALL,
    "DISCONNECTED": ConnectionState.DISCONNECTED,
    "FAILED": ConnectionState.FAILED,
}
# How often "last heard from the platform" is written down while events flow.
_LAST_HEARD_EVERY = timedelta(seconds=5)
# Notifications stored per outbox commit at most: big enough to catch up after any burst, small
# enough that one commit stays well under a second on a slow disk.
_BATCH_LIMIT = 1000


@attrs.define
class ConnectorStats:
    """What the connector did: notifications in, call events made, resyncs, channel closes."""

    notifications: int = 0
    call_events: int = 0
    resyncs: int = 0
    resync_events: int = 0
    resync_failures: int = 0
    closes: int = 0
    presence_events: int = 0
    commits: int = 0
    """Outbox commits of call events: one per batch of notifications, fewer than notifications
    whenever the connector had a backlog to catch up."""


class Connector:
    """Follow ``agent_ids``' calls on the platform and feed them to ``outbox``.

    ``client`` is an open :class:`~crmphone.platform.PlatformClient` (client-credentials tokens:
    the connector reads every agent's conversations). ``dialer`` places a click-to-dial call for
    an agent (without one, :meth:`dial` refuses). ``follow_presence`` adds each agent's presence
    and routing status topics. Run it with :meth:`run` until ``stop`` is set.
    """

    def __init__(
        self,
        client: PlatformClient,
        outbox: Outbox,
        *,
        agent_ids: Collection[str],
        channel_settings: ChannelSettings | None = None,
        dialer: Dialer | None = None,
        follow_presence: bool = True,
        clock: Clock | None = None,
    ) -> None:
        if not agent_ids:
            raise ConfigError("name at least one agent to follow", key="agents.ids")
        self.client = client
        self.outbox = outbox
        self.agent_ids = tuple(dict.fromkeys(agent_ids))
        self.channel_settings = channel_settings
        self.stats = ConnectorStats()
        self.ready = asyncio.Event()
        self._dialer = dialer
        self._clock: Clock = clock or SystemClock()
        self._tracker = CallTracker(self.agent_ids, self._clock)
        self.follow_presence = follow_presence
        self._presence = PresenceTracker(self.agent_ids, self._clock)
        self._stream: NotificationStream | None = None
        self._last_noted: datetime | None = None
        self._resync_lock = asyncio.Lock()
        # Feeding the tracker and storing what it made is one step: the live stream and a resync
        # both feed it, and its events must reach the outbox in the order it made them (a
        # wrap-up stored before its call's alerting would be refused as an orphan, and lost).
        self._feeding = asyncio.Lock()
        self._holding = False
        self._connection_states: dict[str, ConnectionState] = {}
        self._watchers: Watchers[Event] = Watchers(logger)

    @property
    def topics(self) -> tuple[str, ...]:
        """The topics followed: each agent's calls and persistent connection, and their presence
        and routing status when :attr:`follow_presence`."""
        return tuple(
            topic
            for agent in self.agent_ids
            for topic in (
                f"v2.users.{agent}.conversations.calls",
                f"v2.users.{agent}.persistentconnection",
                *(presence_topics(agent) if self.follow_presence else ()),
            )
        )

    def watch(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` with every event the connector makes from now on (call events once
        committed to the outbox, connection and presence status); return what stops it.

        For live views such as the bridge's pages: not durable (the outbox is), and a callback
        must not block. One that raises is logged and kept.
        """
        return self._watchers.add(callback)

    def _notify(self, events: Iterable[Event]) -> None:
        for event in events:
            self._watchers.notify(event)

    @property
    def stream(self) -> NotificationStream | None:
        """The notification stream while running (for its statistics)."""
        return self._stream

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the topics until ``stop`` is set; catch up on what was missed first.

        Raises what the notification stream cannot recover from (bad credentials, refused
        topics); every other failure is ridden out.
        """
        stream = NotificationStream(
            self.client,
            self.topics,
            settings=self.channel_settings,
            clock=self._clock,
            on_close=self._closed,
            on_resync=self._reconnected,
        )
        self._stream = stream
        async with stream:
            logger.info(
                "connector: following %d agent(s) on %d channel(s)",
                len(self.agent_ids),
                len(stream.plan),
            )
            since = await self.outbox.recall(_LAST_HEARD)
            await self.resync(datetime.fromisoformat(since) if since else None)
            self.ready.set()
            consume = asyncio.create_task(self._consume(stream), name="crmphone-connector")
            stopping = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({consume, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self.ready.clear()
                stopping.cancel()
                consume.cancel()
                results = await asyncio.gather(consume, stopping, return_exceptions=True)
                await self._note_heard(force=True)
            failure = results[0]
            if isinstance(failure, BaseException) and not isinstance(
                failure, asyncio.CancelledError
            ):
                raise failure
        self._stream = None

    async def _consume(self, stream: NotificationStream) -> None:
        # Everything waiting is taken at once and stored in one commit: after a burst (or a slow
        # disk) the connector catches up at the disk's commit rate times the batch, not one
        # notification per commit.
        while batch := await stream.next_batch(_BATCH_LIMIT):
            async with self._feeding:
                await self._take(batch)
            await self._note_heard()

    async def _take(self, batch: list[TopicEvent]) -> None:
        calls: list[CallEvent] = []
        for notification in batch:
            self.stats.notifications += 1
            topic = notification.topic_name
            if topic.endswith((".persistentconnection", ".presence", ".routingStatus")):
                # Status events go out at once; the call events before them first, in order.
                await self._submit(calls)
                calls = []
                if topic.endswith(".persistentconnection"):
                    self._connection_changed(notification)
                else:
                    self._publish_presence(self._presence.feed(notification))
            else:
                calls.extend(self._tracker.feed_event(notification))
        await self._submit(calls)

    def _connection_changed(self, notification: TopicEvent) -> None:
        """The platform's view of an agent's persistent connection → a status event for the
        adapters (the "persistent connection active" indicator in the CRM)."""
        body = notification.event_body if isinstance(notification.event_body, dict) else {}
        agent_id = notification.topic_name.split(".")[2]
        state = _PLATFORM_STATES.get(str(body.get("persistentState") or "").upper())
        if state is None:
            logger.warning(
                "connector: ignored a persistentconnection event without a known state for %s",
                agent_id,
            )
            return
        previous = self._connection_states.get(agent_id, ConnectionState.IDLE)
        if state is previous:
            return
        self._connection_states[agent_id] = state
        event = ConnectionStateChanged(
            agent_id=agent_id, previous=previous, state=state, at=self._clock.wall()
        )
        self.outbox.publish_status(event)
        self._notify([event])

    def _publish_presence(self, events: list[PresenceEvent]) -> None:
        for event in events:
            self.stats.presence_events += 1
            self.outbox.publish_status(event)
        self._notify(events)

    async def _resync_presence(self) -> None:
        """Re-read every agent's presence and routing status; report what changed unseen."""
        try:
            users = await self.client.get_users(
                self.agent_ids, expand=("presence", "routingStatus")
            )
        except PlatformError as exc:
            self.stats.resync_failures += 1
            logger.warning("connector: cannot re-read the agents' presence: %s", exc)
            return
        events: list[PresenceEvent] = []
        for user in users:
            if user.presence is not None:
                changed = self._presence.observe_presence(user.id, user.presence)
                events.extend([changed] if changed is not None else [])
            if user.routing_status is not None:
                routed = self._presence.observe_routing_status(user.id, user.routing_status)
                events.extend([routed] if routed is not None else [])
        self._publish_presence(events)

    async def _submit(self, events: list[CallEvent]) -> None:
        if not events:
            return
        self.stats.call_events += len(events)
        while True:
            try:
                await self.outbox.submit(events)
                self.stats.commits += 1
                break
            except StorageError:
                # The disk refuses writes: hold these events (the channel keeps reading into
                # its queue meanwhile) and store them, in order, once it takes writes again.
                # Until then "last heard" must not move past them: a restart resyncs from it.
                self._holding = True
                await self.outbox.wait_writable()
        self._holding = False
        self._notify(events)

    async def _note_heard(self, *, force: bool = False) -> None:
        now = self._clock.wall()
        if self._holding:
            return
        if force or self._last_noted is None or now - self._last_noted >= _LAST_HEARD_EVERY:
            with contextlib.suppress(StorageError):  # noted again at the next event
                await self.outbox.remember(_LAST_HEARD, now.isoformat())
                self._last_noted = now

    # ------------------------------------------------------------------ gaps

    def _closed(self, diagnosis: CloseDiagnosis) -> None:
        self.stats.closes += 1
        logger.info("connector: channel closed: %s", diagnosis.one_line())

    async def _reconnected(self, resync: Resync) -> None:
        await self.resync(resync.gap_started)

    async def resync(self, gap_started: datetime | None) -> list[CallEvent]:
        """Re-read the calls that may have changed unseen since ``gap_started`` (None: only the
        live ones) and submit exactly the events that were missed; return them."""
        async with self._resync_lock:
            self.stats.resyncs += 1
            ids = set(self._tracker.live_conversation_ids())
            now = self._clock.wall()
            if gap_started is not None:
                try:
                    found = await self.client.conversation_ids_between(
                        gap_started - _GAP_MARGIN, now, user_ids=self.agent_ids
                    )
                except PlatformError as exc:
                    self.stats.resync_failures += 1
                    logger.warning(
                        "connector: cannot list the conversations of the gap since %s (%s); "
                        "re-reading live calls only",
                        gap_started.isoformat(),
                        exc,
                    )
                else:
                    ids.update(found)
            current: list[CallConversation] = []
            vanished: list[str] = []
            for conversation_id in sorted(ids):
                try:
                    current.append(await self.client.get_call(conversation_id))
                except NotFoundError:
                    vanished.append(conversation_id)
                except PlatformError as exc:
                    self.stats.resync_failures += 1
                    logger.warning("connector: cannot re-read %s: %s", conversation_id, exc)
            # The re-reads may be older than what the live stream fed meanwhile: the tracker
            # drops what is stale, and nothing else feeds it until these events are stored.
            async with self._feeding:
                events: list[CallEvent] = []
                for conversation_id in vanished:
                    events.extend(self._tracker.forget(conversation_id))
                events.extend(self._tracker.resync(current))
                self.stats.resync_events += len(events)
                if events:
                    logger.info("connector: resync found %d missed event(s)", len(events))
                await self._submit(events)
            if self.follow_presence:
                await self._resync_presence()
            await self._note_heard(force=True)
            return events

    # ------------------------------------------------------------------ commands

    async def dial(
        self, number: str, *, agent_id: str, record: CrmRecord | None = None, adapter: str
    ) -> str:
        """Place a click-to-dial call for ``agent_id``; link its log to ``record`` for ``adapter``.

        The link is read when the log is written, at connect at the earliest, by which time the
        platform has named the conversation and the link is stored.
        """
        if self._dialer is None:
            raise ConfigError(
                "click-to-dial needs the agent's phone: run the connector with a dialer "
                "(the bridge provides one)",
                key="adapters",
            )
        conversation_id = await self._dialer(agent_id, number)
        if record is not None:
            await self.outbox.link_record(adapter, conversation_id, record)
        return conversation_id


class AdapterCommands:
    """The :class:`~crmphone.adapters.Commands` an adapter gets: dials through the connector,
    linking the call's log to the record (bound to the connector once it exists)."""

    def __init__(self, adapter: str) -> None:
        self.adapter = adapter
        self.connector: Connector | None = None

    async def dial(self, number: str, *, agent_id: str, record: CrmRecord | None = None) -> str:
        """Place a call for ``agent_id`` to ``number``; its log links to ``record``."""
        if self.connector is None:
            raise ConfigError("the connector is not running yet", key="adapters")
        return await self.connector.dial(
            number, agent_id=agent_id, record=record, adapter=self.adapter
        )


class PhoneControls(Protocol):
    """What :class:`BridgeCommands` needs of an agent's phone
    (:class:`~crmphone.phone.Softphone` is one)."""

    @property
    def status(self) -> PhoneStatus:
        """The connection, microphone and calls right now."""
        ...

    async def answer(self, conversation_id: str) -> None:
        """Answer a ringing call."""
        ...

    async def hang_up(self, conversation_id: str | None = None) -> None:
        """Hang up (or decline) a call."""
        ...

    async def mute(self, muted: bool = True) -> None:
        """Mute or unmute the current call."""
        ...

    async def hold(self, held: bool = True) -> None:
        """Hold or resume the current call."""
        ...

    async def stop(self, *, force: bool = False) -> None:
        """Stop the persistent connection (``force``: even during a call)."""
        ...


class BridgeCommands:
    """The :class:`~crmphone.bridge.CommandHandler` the connector gives the bridge.

    A page's click-to-dial goes through :meth:`Connector.dial`, so the call's log links to the
    record the page sent, in the adapter that page belongs to. Answer, hang up, mute and hold go to
    the phone that has the call; stopping the persistent connection goes to ``agent_id``'s phone.

    ``agent_id`` is the agent whose phone acts when a command does not say; ``adapters`` maps a
    page's kind (its hello's ``client``: ``salesforce``, ``zendesk``) to the adapter instance
    whose log the record belongs in (default: the same name); ``phones`` maps agent ids to their
    phones in this process. Without a phone, phone commands are refused as ``unavailable``.
    """

    def __init__(
        self,
        connector: Connector,
        *,
        agent_id: str,
        adapters: Mapping[str, str] | None = None,
        phones: Mapping[str, PhoneControls] | None = None,
    ) -> None:
        self.connector = connector
        self.agent_id = agent_id
        self.adapters = dict(adapters or {})
        self.phones = dict(phones or {})

    async def handle(self, command: Command, client: ConnectedClient) -> Mapping[str, Any]:
        """Carry out ``command`` from the page ``client``."""
        match command:
            case Dial():
                adapter = self.adapters.get(client.kind, client.kind)
                conversation_id = await self.connector.dial(
                    command.number,
                    agent_id=command.agent_id or self.agent_id,
                    record=command.record,
                    adapter=adapter,
                )
                return {"conversation_id": conversation_id}
            case Answer(conversation_id=conversation_id):
                await self._phone_with(command).answer(conversation_id)
            case Hangup(conversation_id=conversation_id):
                await self._phone_with(command).hang_up(conversation_id)
            case Mute(muted=muted):
                await self._phone_with(command, current=True).mute(muted)
            case Hold(held=held):
                await self._phone_with(command, current=True).hold(held)
            case StopPersistent(force=force):
                phone = self.phones.get(self.agent_id)
                if phone is None:
                    raise self._no_phone(command)
                await phone.stop(force=force)
                return {"agent_id": self.agent_id}
        return {"conversation_id": command.conversation_id}

    def _phone_with(
        self, command: Answer | Hangup | Mute | Hold, *, current: bool = False
    ) -> PhoneControls:
        """The phone on which the command's call is ringing or connected (``current``: the call
        the phone is on, which mute and hold act on); else the desk agent's phone, which refuses
        a call it does not have."""
        if not self.phones:
            raise self._no_phone(command)
        conversation_id = command.conversation_id
        for phone in self.phones.values():
            status = phone.status
            if status.call is not None and status.call.conversation_id == conversation_id:
                return phone
            if not current and any(c.conversation_id == conversation_id for c in status.ringing):
                return phone
        desk = self.phones.get(self.agent_id)
        if desk is None:
            raise InvalidStateError(f"no phone here has call {conversation_id}")
        if current and (
            desk.status.call is None or desk.status.call.conversation_id != conversation_id
        ):
            raise InvalidStateError(f"{self.agent_id}'s phone is not on call {conversation_id}")
        return desk

    @staticmethod
    def _no_phone(command: Command) -> CommandError:
        return CommandError(
            ErrorCode.UNAVAILABLE,
            f"{command.name} needs the agent's phone in this crmphone process "
            "([phone] in connector.toml)",
        )
