"""The softphone: one agent's phone, with a persistent WebRTC connection, as an async context.

.. code-block:: python

    from crmphone.audio import Tone
    from crmphone.phone import PhoneSettings, Softphone

    async with Softphone(client, settings=PhoneSettings(auto_answer=True), source=Tone(440)) as phone:
        async for call in phone.calls():          # each call that starts ringing
            print(call.remote_number, phone.status.persistent_active)

Entering logs the agent in: reads the user (station, permissions) and the station (persistent
connection on or off), follows ``v2.users.{id}.conversations.calls`` and
``v2.users.{id}.persistentconnection`` on a notification channel, and opens the first-call
signalling. Leaving logs out: any call is hung up, the connection closed, the platform told.

This module is the I/O around :class:`~crmphone.phone.session.ConnectionPolicy`: every input goes
through the policy under one lock, and the actions it returns are carried out in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Literal, Self

import attrs

from crmphone._webrtc import IceSettings
from crmphone.audio import AudioSink, AudioSource, Discard, Silence
from crmphone.clock import Clock, SystemClock
from crmphone.errors import InvalidStateError, PlatformError
from crmphone.events import ConnectionState, DownReason, PhoneEvent
from crmphone.notifications import ChannelSettings, NotificationStream
from crmphone.notifications.channel import Resync
from crmphone.notifications.messages import TopicEvent
from crmphone.platform import PlatformClient
from crmphone.platform.models import CallConversation, Participant

from .media import MediaSession
from .session import (
    Action,
    AnswerCall,
    CloseConnection,
    ConnectionPolicy,
    Emit,
    HangUpCall,
    PolicySettings,
    Proceed,
    SetMicrophone,
)
from .signalling import (
    JsonSignalling,
    MalformedSignal,
    Offer,
    Propose,
    Signalling,
    SignallingClosed,
    SignallingError,
    Terminate,
)

__all__ = [
    "ACCEPT_OFF_QUEUE",
    "CallState",
    "CallTiming",
    "CallUpdate",
    "PhoneCall",
    "PhoneSettings",
    "PhoneStatus",
    "Softphone",
]

logger = logging.getLogger(__name__)

ACCEPT_OFF_QUEUE = "routing:conversation:acceptOffQueue"
"""The permission that makes the platform set the persistent connection up at login."""

CallState = Literal["ringing", "connected", "ended"]

_RINGING = {"alerting", "offering", "contacting"}
_CONNECTED = {"connected", "dialing"}
_ENDED = {"disconnected", "terminated"}
_DOWN_REASONS = {reason.value for reason in DownReason}


@attrs.frozen
class PhoneSettings:
    """How the softphone behaves (times in seconds)."""

    auto_answer: bool = False
    """Answer every call at once (the agent's auto-answer setting)."""
    keep_microphone_live: bool = False
    """Send microphone audio between calls too (privacy: off by default)."""
    inactivity_timeout: float = 600.0
    """Close the persistent connection after this long without a call (the platform's default)."""
    setup_timeout: float = 15.0
    """How long a media set-up may take before it counts as failed."""
    liveness_window: float = 2.5
    """Quiet time after which the media path counts as dead (aiortc alone: about 30 s)."""
    ice: IceSettings = attrs.field(factory=IceSettings)
    """ICE host addresses and STUN/TURN servers (default: all interfaces, no servers)."""
    channel: ChannelSettings | None = None
    """Notification channel settings (None: production defaults)."""

    def policy(self) -> PolicySettings:
        """The subset the connection policy uses."""
        return PolicySettings(
            inactivity_timeout=self.inactivity_timeout,
            auto_answer=self.auto_answer,
            keep_microphone_live=self.keep_microphone_live,
            setup_timeout=self.setup_timeout,
        )


@attrs.frozen
class PhoneCall:
    """A call on this phone, as the agent sees it."""

    conversation_id: str
    participant_id: str
    state: CallState
    direction: str | None
    remote_number: str | None
    remote_name: str | None
    held: bool = False
    muted: bool = False
    disconnect_type: str | None = None


@attrs.frozen
class CallUpdate:
    """A call on this phone changed (started ringing, connected, held, ended...)."""

    name: ClassVar[str] = "phone.call"
    call: PhoneCall
    at: datetime


@attrs.frozen
class CallTiming:
    """What the phone measured of one call's answer (wall-clock UTC).

    ``answered_at``: when we answered (PATCH sent, or proceeded with the set-up).
    ``first_rtp_at``: when the first packet of the caller's audio reached us.
    ``over_existing_connection``: answered on a live persistent connection (no set-up).
    """

    conversation_id: str
    alerting_seen_at: datetime | None
    answered_at: datetime | None
    first_rtp_at: datetime | None
    over_existing_connection: bool


@attrs.frozen
class PhoneStatus:
    """What a UI shows: the persistent-connection icon, the microphone, the call."""

    agent_id: str
    station_id: str | None
    connection: ConnectionState
    persistent: bool
    microphone_live: bool
    call: PhoneCall | None
    ringing: tuple[PhoneCall, ...]

    @property
    def persistent_active(self) -> bool:
        """The "persistent connection active" indicator."""
        return self.persistent and self.connection.is_up


PhoneUpdate = PhoneEvent | CallUpdate


class Softphone:
    """One agent's softphone (see the module docstring).

    ``client`` must carry the agent's own token (Authorization Code grant). ``source`` is what we
    send during calls (default: silence), ``sink`` what we do with what we hear (default: drop
    it). ``signalling`` defaults to the sandbox's JSON signalling on a streaming channel.
    """

    def __init__(
        self,
        client: PlatformClient,
        *,
        settings: PhoneSettings | None = None,
        source: AudioSource | None = None,
        sink: AudioSink | None = None,
        signalling: Signalling | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._client = client
        self.settings = settings or PhoneSettings()
        self._source = source or Silence()
        self._sink = sink or Discard()
        self._signalling: Signalling = signalling or JsonSignalling(client)
        self._clock = clock or SystemClock()
        self._policy: ConnectionPolicy | None = None
        self._stream: NotificationStream | None = None
        self._media: MediaSession | None = None
        self._media_ready = asyncio.Event()
        self._proceeded: str | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._listeners: list[asyncio.Queue[PhoneUpdate | None]] = []
        self._calls: dict[str, PhoneCall] = {}
        self._timings: dict[str, CallTiming] = {}
        self._agent_id = ""
        self._station_id: str | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        me = await self._client.get_me()
        persistent = False
        if me.station_id is not None:
            station = await self._client.get_station(me.station_id)
            persistent = station.web_rtc_persistent_enabled
        self._agent_id, self._station_id = me.id, me.station_id
        self._policy = ConnectionPolicy(
            me.id, station_id=me.station_id, settings=self.settings.policy(), clock=self._clock
        )
        topics = [f"v2.users.{me.id}.conversations.calls", f"v2.users.{me.id}.persistentconnection"]
        self._stream = NotificationStream(
            self._client, topics, settings=self.settings.channel, on_resync=self._resync
        )
        await self._stream.__aenter__()
        try:
            await self._signalling.start()
            self._spawn(self._follow_notifications(), "crmphone-phone-notifications")
            self._spawn(self._follow_signalling(), "crmphone-phone-signalling")
            self._spawn(self._run_timers(), "crmphone-phone-timers")
            policy = self._policy
            await self._apply(
                lambda: policy.login(
                    accept_off_queue=ACCEPT_OFF_QUEUE in me.permissions, persistent=persistent
                )
            )
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Log out: hang up any call, close the connection, tell the platform (idempotent)."""
        if self._closed:
            return
        if self._policy is not None:
            with contextlib.suppress(InvalidStateError):
                await self._apply(self._policy.logout)
        await self._shutdown()

    async def _shutdown(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._media is not None:
            await self._media.close()
            self._media = None
        await self._signalling.aclose()
        if self._stream is not None:
            await self._stream.__aexit__(None, None, None)
        for queue in self._listeners:
            queue.put_nowait(None)

    # ------------------------------------------------------------------ what it looks like

    @property
    def agent_id(self) -> str:
        """The logged-in agent's user id."""
        return self._agent_id

    @property
    def status(self) -> PhoneStatus:
        """The connection, microphone and calls right now."""
        policy = self._require_policy()
        current = self._calls.get(policy.current_call or "")
        ringing = tuple(c for c in self._calls.values() if c.state == "ringing")
        return PhoneStatus(
            agent_id=self._agent_id,
            station_id=self._station_id,
            connection=policy.state,
            persistent=policy.persistent,
            microphone_live=policy.microphone_live,
            call=current,
            ringing=ringing,
        )

    def timing(self, conversation_id: str) -> CallTiming | None:
        """What was measured of ``conversation_id``'s answer (None if it never rang here)."""
        return self._timings.get(conversation_id)

    async def updates(self) -> AsyncIterator[PhoneUpdate]:
        """Every connection, microphone and call event from now on, until the phone closes."""
        queue: asyncio.Queue[PhoneUpdate | None] = asyncio.Queue()
        self._listeners.append(queue)
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            self._listeners.remove(queue)

    async def calls(self) -> AsyncIterator[PhoneCall]:
        """Each call as it starts ringing on this phone."""
        async for update in self.updates():
            if isinstance(update, CallUpdate) and update.call.state == "ringing":
                yield update.call

    # ------------------------------------------------------------------ the agent's controls

    async def answer(self, conversation_id: str) -> None:
        """Answer a ringing call (over the live connection, or by setting one up)."""
        policy = self._require_policy()
        await self._apply(lambda: policy.answer(conversation_id))

    async def hang_up(self, conversation_id: str | None = None) -> None:
        """Hang up (or reject, while ringing) ``conversation_id``, by default the current call."""
        policy = self._require_policy()
        target = conversation_id or policy.current_call
        call = self._calls.get(target or "")
        if call is None or call.state == "ended":
            raise InvalidStateError("There is no call to hang up.")
        await self._client.patch_participant(
            call.conversation_id, call.participant_id, state="disconnected"
        )

    async def mute(self, muted: bool = True) -> None:
        """Mute (or unmute) the current call: the platform is told and no audio is sent."""
        call = self._current_call()
        await self._client.patch_participant(call.conversation_id, call.participant_id, muted=muted)
        policy = self._require_policy()
        await self._apply(lambda: policy.set_muted(muted))

    async def hold(self, held: bool = True) -> None:
        """Hold (or resume) the current call."""
        call = self._current_call()
        await self._client.patch_participant(call.conversation_id, call.participant_id, held=held)
        policy = self._require_policy()
        await self._apply(lambda: policy.set_held(held))

    async def dial(self, phone_number: str) -> str:
        """Call ``phone_number``; returns the conversation id."""
        self._require_policy()
        return await self._client.place_call(phone_number)

    async def stop(self, *, force: bool = False) -> None:
        """Stop the persistent connection (during a call only with ``force=True``: drops it)."""
        policy = self._require_policy()
        await self._apply(lambda: policy.stop(force=force))

    # ------------------------------------------------------------------ inputs

    async def _follow_notifications(self) -> None:
        assert self._stream is not None
        async for event in self._stream:
            await self._on_topic_event(event)

    async def _on_topic_event(self, event: TopicEvent) -> None:
        policy = self._require_policy()
        if event.topic_name.endswith(".persistentconnection"):
            body = event.event_body if isinstance(event.event_body, dict) else {}
            if body.get("stationId") not in (None, self._station_id):
                return
            state = str(body.get("persistentState") or "")
            info = body.get("errorInfo")
            detail = str(info.get("message") or "") if isinstance(info, dict) else ""
            await self._apply(lambda: policy.platform_state(state, detail=detail))
            return
        try:
            conversation = CallConversation.from_genesys(event.event_body)
        except PlatformError:
            logger.warning("phone: ignored a malformed call event on %s", event.topic_name)
            return
        await self._on_conversation(conversation)

    async def _on_conversation(self, conversation: CallConversation) -> None:
        leg = self._my_leg(conversation)
        if leg is None:
            return
        policy = self._require_policy()
        state = self._call_state(leg.state)
        if state is None:
            return
        previous = self._calls.get(conversation.id)
        remote = next((p for p in conversation.participants if p.purpose == "customer"), None)
        call = PhoneCall(
            conversation_id=conversation.id,
            participant_id=leg.id,
            state=state,
            direction=leg.direction,
            remote_number=(remote.ani if leg.direction == "inbound" else remote.dnis)
            if remote is not None
            else leg.ani,
            remote_name=remote.name if remote is not None else None,
            held=bool(leg.held),
            muted=bool(leg.muted),
            disconnect_type=leg.disconnect_type,
        )
        if previous == call or (previous is not None and previous.state == "ended"):
            return
        self._calls[conversation.id] = call
        if state == "ended":
            self._prune_ended_calls()
        if state == "ringing" and previous is None:
            self._timings[conversation.id] = CallTiming(
                conversation.id, self._clock.wall(), None, None, False
            )
        self._publish(CallUpdate(call, self._clock.wall()))
        if previous is None or previous.state != state:
            step = {
                "ringing": policy.call_alerting,
                "connected": policy.call_connected,
                "ended": policy.call_ended,
            }[state]
            await self._apply(lambda: step(conversation.id))

    def _my_leg(self, conversation: CallConversation) -> Participant | None:
        mine = [
            p
            for p in conversation.participants
            if p.user_id == self._agent_id and p.purpose in ("agent", "user")
        ]
        if not mine:
            return None
        live = [p for p in mine if p.state not in _ENDED]
        return (live or mine)[-1]

    @staticmethod
    def _call_state(state: str | None) -> CallState | None:
        if state in _RINGING:
            return "ringing"
        if state in _CONNECTED:
            return "connected"
        if state in _ENDED:
            return "ended"
        return None

    async def _resync(self, resync: Resync) -> None:
        """After a notification gap, re-read the calls we were following and catch up."""
        for conversation_id, call in list(self._calls.items()):
            if call.state == "ended":
                continue
            try:
                conversation = await self._client.get_call(conversation_id)
            except PlatformError:
                logger.warning("phone: could not re-read call %s after a gap", conversation_id)
                continue
            await self._on_conversation(conversation)

    async def _follow_signalling(self) -> None:
        async for message in self._signalling.messages():
            await self._on_signal(message)

    async def _on_signal(self, message: object) -> None:
        policy = self._require_policy()
        match message:
            case Propose():
                await self._apply(
                    lambda: policy.proposal(
                        message.session_id,
                        conversation_id=message.conversation_id,
                        purpose=message.purpose,
                        auto_answer=message.auto_answer,
                    )
                )
            case Offer():
                async with self._lock:
                    await self._accept_offer(message)
            case Terminate():
                if self._media is None or message.session_id not in (None, self._media.session_id):
                    return
                if message.reason == "call_ended":
                    return  # a station without persistence: the call's end closes it already
                reason = DownReason(message.reason) if message.reason in _DOWN_REASONS else None
                detail = f"the platform ended it: {message.reason}"
                await self._apply(
                    lambda: policy.platform_state("DISCONNECTED", detail=detail, reason=reason)
                )
            case SignallingError():
                logger.warning("phone: the platform refused: %s %s", message.code, message.message)
                if message.session_id is not None and message.session_id == self._proceeded:
                    await self._apply(
                        lambda: policy.setup_failed(f"{message.code}: {message.message}")
                    )
            case SignallingClosed() | MalformedSignal():
                logger.info("phone: signalling: %s", message)

    async def _accept_offer(self, offer: Offer) -> None:
        policy = self._require_policy()
        if offer.session_id != self._proceeded or policy.state is not ConnectionState.ESTABLISHING:
            logger.warning("phone: ignored an offer for session %s", offer.session_id)
            return
        if self._media is not None:
            await self._media.close()
        media = MediaSession(
            session_id=offer.session_id,
            ice=self.settings.ice,
            source=self._source,
            sink=self._sink,
            on_up=lambda: self._later(policy.media_up),
            on_failed=lambda detail: self._later(lambda: self._media_failed(media, detail)),
            liveness_window=self.settings.liveness_window,
        )
        self._media = media
        self._media_ready.set()
        try:
            answer = await media.accept_offer(offer.sdp, microphone_live=policy.microphone_live)
            await self._signalling.answer(offer.session_id, answer)
        except Exception as exc:  # noqa: BLE001 - any failure to answer is a failed set-up
            logger.warning("phone: could not answer the offer: %s", exc)
            await self._execute(policy.setup_failed(f"could not answer the offer: {exc}"))

    def _media_failed(self, media: MediaSession, detail: str) -> list[Action]:
        if media is not self._media:
            return []  # a connection we already replaced or closed
        policy = self._require_policy()
        if policy.state is ConnectionState.ESTABLISHING:
            return policy.setup_failed(detail)
        return policy.media_failed(detail)

    async def _run_timers(self) -> None:
        policy = self._require_policy()
        while True:
            deadline = policy.next_deadline()
            self._wake.clear()
            if deadline is None:
                await self._wake.wait()
                continue
            delay = deadline - self._clock.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                continue
            await self._apply(policy.tick)

    # ------------------------------------------------------------------ carrying out actions

    async def _apply(self, step: Callable[[], list[Action]]) -> None:
        async with self._lock:
            actions = step()
            await self._execute(actions)
        self._wake.set()

    def _later(self, step: Callable[[], list[Action]]) -> None:
        if not self._closed:
            self._spawn(self._apply(step), "crmphone-phone-input")

    async def _execute(self, actions: list[Action]) -> None:
        policy = self._require_policy()
        for action in actions:
            match action:
                case Emit(event):
                    self._publish(event)
                case SetMicrophone(live):
                    if self._media is not None:
                        self._media.set_microphone(live)
                case Proceed(session_id, silent):
                    self._proceeded = session_id
                    if not silent:
                        self._mark_answered(None, over_existing=False)
                    await self._signalling.proceed(session_id)
                case AnswerCall(conversation_id):
                    await self._answer_by_patch(conversation_id, policy)
                case HangUpCall(conversation_id):
                    await self._hang_up_quietly(conversation_id)
                case CloseConnection(reason, tell_platform):
                    await self._close_connection(str(reason), tell_platform)

    async def _answer_by_patch(self, conversation_id: str, policy: ConnectionPolicy) -> None:
        call = self._calls.get(conversation_id)
        self._mark_answered(conversation_id, over_existing=True)
        if call is None:
            await self._execute(policy.answer_failed(conversation_id))
            raise InvalidStateError(f"Call {conversation_id} is not known to this phone.")
        try:
            await self._client.patch_participant(
                conversation_id, call.participant_id, state="connected"
            )
        except Exception:
            await self._execute(policy.answer_failed(conversation_id))
            raise

    async def _hang_up_quietly(self, conversation_id: str) -> None:
        call = self._calls.get(conversation_id)
        if call is None:
            return
        try:
            await self._client.patch_participant(
                conversation_id, call.participant_id, state="disconnected"
            )
        except PlatformError as exc:  # already gone: what we wanted
            logger.info("phone: hanging up %s: %s", conversation_id, exc)

    async def _close_connection(self, reason: str, tell_platform: bool) -> None:
        media, self._media = self._media, None
        self._media_ready.clear()
        if tell_platform:
            try:
                session_id = media.session_id if media is not None else None
                await self._signalling.terminate(session_id, reason)
            except Exception as exc:  # noqa: BLE001 - closing must go on whatever failed
                logger.warning("phone: could not tell the platform (%s): %s", reason, exc)
        if media is not None:
            await media.close()

    def _mark_answered(self, conversation_id: str | None, *, over_existing: bool) -> None:
        """Start measuring the answer: from now until the caller's first packet reaches us."""
        policy = self._require_policy()
        if conversation_id is None:
            ringing = [c for c in self._calls.values() if c.state == "ringing"]
            conversation_id = ringing[-1].conversation_id if ringing else None
        if conversation_id is None:
            return
        previous = self._timings.get(conversation_id)
        answered = self._clock.wall()
        self._timings[conversation_id] = CallTiming(
            conversation_id,
            previous.alerting_seen_at if previous is not None else None,
            answered,
            None,
            over_existing,
        )
        self._spawn(
            self._measure_first_rtp(conversation_id, answered, policy), "crmphone-phone-first-rtp"
        )

    async def _measure_first_rtp(
        self, conversation_id: str, mark: datetime, policy: ConnectionPolicy
    ) -> None:
        # For a first call the media session does not exist yet: wait for the offer to make it.
        try:
            async with asyncio.timeout(self.settings.setup_timeout):
                await self._media_ready.wait()
        except TimeoutError:
            return
        media = self._media
        if media is None:
            return
        first = await media.first_rtp_after(mark, self.settings.setup_timeout)
        timing = self._timings.get(conversation_id)
        if timing is not None and first is not None:
            self._timings[conversation_id] = attrs.evolve(timing, first_rtp_at=first)

    # ------------------------------------------------------------------ plumbing

    def _publish(self, update: PhoneUpdate) -> None:
        for queue in self._listeners:
            queue.put_nowait(update)

    def _prune_ended_calls(self) -> None:
        # Keep ended calls a while (late duplicates must not ring again), but not forever.
        ended = [cid for cid, call in self._calls.items() if call.state == "ended"]
        for old in ended[:-100]:
            self._calls.pop(old, None)
            self._timings.pop(old, None)

    def _current_call(self) -> PhoneCall:
        policy = self._require_policy()
        call = self._calls.get(policy.current_call or "")
        if call is None:
            raise InvalidStateError("There is no call in progress.")
        return call

    def _require_policy(self) -> ConnectionPolicy:
        if self._policy is None:
            raise InvalidStateError("The softphone is not logged in (use it with `async with`).")
        return self._policy

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("phone: task %s failed", task.get_name(), exc_info=task.exception())
