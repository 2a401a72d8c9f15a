"""The persistent-connection policy, sans-I/O: what the phone does, never how.

:class:`ConnectionPolicy` is a pure state machine. The softphone feeds it what happened (a
proposal on the signalling socket, a call alerting on the notification channel, the media coming
up, a user pressing *answer* or *stop*, a clock tick) and carries out the :data:`Action` values it
returns (proceed with a set-up, PATCH an answer, close the peer connection and tell the platform,
switch the microphone, publish an event). Time comes from an injected
:class:`~crmphone.clock.Clock`, so the 10-minute inactivity timeout is tested in microseconds.

Every state change goes through :data:`TRANSITIONS`; a change not in the table raises
:class:`~crmphone.errors.InvalidStateError`. What the *platform* reports in a state where it makes
no sense (a late event, a duplicate) is ignored and counted in :attr:`ConnectionPolicy.ignored`,
never raised: the platform is not ours to crash on. What the *user* asks for in the wrong state
(answer a call that is not ringing, stop a connection that is not there) raises.

The rules (PROTOCOLS.md §1, "Persistent connection"):

* The station decides whether connections persist. When they do, the connection stays up after the
  first call; later calls are answered with a REST PATCH and ride it (no offer/answer).
* It comes up at login for agents with ``routing:conversation:acceptOffQueue`` (the platform sends
  a silent, auto-answered set-up), otherwise with the first call.
* The inactivity timeout (default 600 s) runs while no call is on the connection and restarts at
  every call start and end; when it fires the connection closes and the next call sets it up again.
* It ends at logout, at a manual stop, at the timeout, on media failure. A manual stop during a call
  would drop the call: refused with :class:`CallInProgressError` unless ``force=True``, which hangs
  the call up explicitly and says so in the event.
* Between calls no microphone audio is sent unless the user opted in (``keep_microphone_live``).
"""

from __future__ import annotations

import enum
from typing import Literal

import attrs

from crmphone.clock import Clock
from crmphone.errors import InvalidStateError
from crmphone.events import (
    ConnectionState,
    ConnectionStateChanged,
    DownReason,
    MicrophoneLive,
    PersistentConnectionDown,
    PersistentConnectionUp,
    PhoneEvent,
)

__all__ = [
    "TRANSITIONS",
    "Action",
    "AnswerCall",
    "CallInProgressError",
    "CloseConnection",
    "ConnectionPolicy",
    "Emit",
    "HangUpCall",
    "PolicySettings",
    "Proceed",
    "SetMicrophone",
    "Trigger",
    "next_state",
]


class CallInProgressError(InvalidStateError):
    """Stopping the persistent connection now would drop the call on it (use ``force=True``)."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(
            f"Call {conversation_id} is on the persistent connection; stopping it now would drop "
            "the call. Use stop(force=True) to end the call and the connection."
        )
        self.conversation_id = conversation_id


class Trigger(enum.Enum):
    """What moves the connection from one state to another."""

    AWAIT_SETUP = "await_setup"
    PROCEED = "proceed"
    MEDIA_UP = "media_up"
    SETUP_FAILED = "setup_failed"
    CALL_CONNECTED = "call_connected"
    CALL_ENDED = "call_ended"
    CALL_ENDED_CLOSE = "call_ended_close"
    IDLE_TIMEOUT = "idle_timeout"
    STOP = "stop"
    FORCED_STOP = "forced_stop"
    LOGOUT = "logout"
    MEDIA_FAILED = "media_failed"
    PLATFORM_DISCONNECTED = "platform_disconnected"
    PLATFORM_FAILED = "platform_failed"


_S = ConnectionState
_T = Trigger
_ENDABLE = (_S.ESTABLISHING, _S.PERSISTED, _S.ACTIVE_CALL)

TRANSITIONS: dict[tuple[ConnectionState, Trigger], ConnectionState] = {
    # Login with acceptOffQueue: the platform's silent set-up is awaited.
    (_S.IDLE, _T.AWAIT_SETUP): _S.ESTABLISHING,
    # Proceeding with a proposal starts (or, awaited at login, continues) a set-up.
    (_S.IDLE, _T.PROCEED): _S.ESTABLISHING,
    (_S.DISCONNECTED, _T.PROCEED): _S.ESTABLISHING,
    (_S.FAILED, _T.PROCEED): _S.ESTABLISHING,
    (_S.ESTABLISHING, _T.PROCEED): _S.ESTABLISHING,
    (_S.ESTABLISHING, _T.MEDIA_UP): _S.PERSISTED,
    (_S.ESTABLISHING, _T.SETUP_FAILED): _S.FAILED,
    (_S.PERSISTED, _T.CALL_CONNECTED): _S.ACTIVE_CALL,
    (_S.ACTIVE_CALL, _T.CALL_ENDED): _S.PERSISTED,
    # A station without persistent connections: the connection lived for one call.
    (_S.ACTIVE_CALL, _T.CALL_ENDED_CLOSE): _S.DISCONNECTED,
    (_S.PERSISTED, _T.IDLE_TIMEOUT): _S.DISCONNECTED,
    (_S.ESTABLISHING, _T.STOP): _S.DISCONNECTED,
    (_S.PERSISTED, _T.STOP): _S.DISCONNECTED,
    (_S.ACTIVE_CALL, _T.FORCED_STOP): _S.DISCONNECTED,
    **{(state, _T.LOGOUT): _S.DISCONNECTED for state in _ENDABLE},
    **{(state, _T.MEDIA_FAILED): _S.FAILED for state in _ENDABLE},
    **{(state, _T.PLATFORM_DISCONNECTED): _S.DISCONNECTED for state in _ENDABLE},
    **{(state, _T.PLATFORM_FAILED): _S.FAILED for state in _ENDABLE},
}
"""Every legal change of :class:`~crmphone.phone.events.ConnectionState`, in one table."""


def next_state(state: ConnectionState, trigger: Trigger) -> ConnectionState:
    """The state ``trigger`` leads to from ``state``; InvalidStateError when the table has none."""
    target = TRANSITIONS.get((state, trigger))
    if target is None:
        raise InvalidStateError(
            f"The phone connection cannot {trigger.value.replace('_', ' ')} while {state.value}."
        )
    return target


# ---------------------------------------------------------------------------------------- actions


@attrs.frozen
class Proceed:
    """Accept the platform's proposal ``session_id`` (the offer follows); ``silent``: no call."""

    session_id: str
    silent: bool


@attrs.frozen
class AnswerCall:
    """Answer ``conversation_id`` with the REST PATCH: its audio rides the live connection."""

    conversation_id: str


@attrs.frozen
class HangUpCall:
    """Hang up ``conversation_id`` (a forced stop or a logout ends the call explicitly)."""

    conversation_id: str


@attrs.frozen
class CloseConnection:
    """Close the peer connection; when ``tell_platform``, send it ``terminate(reason)`` first.

    Telling the platform is what keeps it from holding a stale connection that blocks calls.
    """

    reason: DownReason | Literal["call_ended"]
    tell_platform: bool


@attrs.frozen
class SetMicrophone:
    """Start (``live``) or stop sending microphone audio."""

    live: bool


@attrs.frozen
class Emit:
    """Publish ``event`` to whoever follows the phone."""

    event: PhoneEvent


Action = Proceed | AnswerCall | HangUpCall | CloseConnection | SetMicrophone | Emit
"""What :class:`ConnectionPolicy` asks its I/O layer to do, in order."""


@attrs.frozen
class PolicySettings:
    """The agent's phone settings (times in seconds)."""

    inactivity_timeout: float = 600.0
    """Idle time after which a persistent connection closes (the platform's default is 600 s)."""
    auto_answer: bool = False
    """Answer every offered call at once (the agent's auto-answer setting)."""
    keep_microphone_live: bool = False
    """Send microphone audio between calls too (off: nothing is sent between calls)."""
    setup_timeout: float = 15.0
    """How long a set-up (login set-up, or offer/answer/ICE/DTLS) may take before it failed."""

    def __attrs_post_init__(self) -> None:
        for name in ("inactivity_timeout", "setup_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


@attrs.define
class _Offer:
    conversation_id: str
    session_id: str | None = None
    answer_requested: bool = False


Route = Literal["patch", "signalling", "unknown"]


class ConnectionPolicy:
    """The persistent-connection state machine of one agent's phone (see the module docstring).

    Build it, call :meth:`login`, then feed it events; each method returns the actions to carry
    out in order. :meth:`next_deadline` says when :meth:`tick` must be called next.
    """

    def __init__(
        self,
        agent_id: str,
        *,
        station_id: str | None = None,
        settings: PolicySettings | None = None,
        clock: Clock,
    ) -> None:
        self.agent_id = agent_id
        self.station_id = station_id
        self.settings = settings if settings is not None else PolicySettings()
        self._clock = clock
        self._state = ConnectionState.IDLE
        self._persistent = False
        self._logged_in = False
        self._logged_out = False
        self._offers: dict[str, _Offer] = {}
        self._setup_session: str | None = None
        self._setup_call: str | None = None
        self._answering: str | None = None
        self._call: str | None = None
        self._connected_early: str | None = None
        self._muted = False
        self._held = False
        self._mic_live = False
        self._up_announced = False
        self._idle_deadline: float | None = None
        self._setup_deadline: float | None = None
        self.ignored = 0
        """Platform inputs that made no sense in the state they arrived in (ignored)."""

    # ------------------------------------------------------------------ what it looks like

    @property
    def state(self) -> ConnectionState:
        """The connection's state now."""
        return self._state

    @property
    def persistent(self) -> bool:
        """Whether the station keeps connections up between calls."""
        return self._persistent

    @property
    def microphone_live(self) -> bool:
        """Whether microphone audio is being sent."""
        return self._mic_live

    @property
    def current_call(self) -> str | None:
        """The conversation riding the connection (``ACTIVE_CALL``), if any."""
        return self._call

    @property
    def muted(self) -> bool:
        """Whether the agent muted the current call."""
        return self._muted

    @property
    def held(self) -> bool:
        """Whether the current call is on hold."""
        return self._held

    def ringing(self) -> tuple[str, ...]:
        """Conversation ids offered and not yet answered or ended."""
        return tuple(self._offers)

    def route(self, conversation_id: str) -> Route:
        """How ``conversation_id`` would be answered: PATCH, signalling, or not known yet."""
        offer = self._offers.get(conversation_id)
        if offer is None or offer.session_id is None:
            return "patch" if self._state.is_up else "unknown"
        return "signalling"

    def next_deadline(self) -> float | None:
        """Monotonic time at which :meth:`tick` has work to do (None: no timer running)."""
        deadlines = [d for d in (self._idle_deadline, self._setup_deadline) if d is not None]
        return min(deadlines) if deadlines else None

    # ------------------------------------------------------------------ session

    def login(self, *, accept_off_queue: bool, persistent: bool) -> list[Action]:
        """The agent logged in; ``persistent`` is the station's setting.

        With ``accept_off_queue`` on a persistent station the platform sets the connection up
        now, so the state becomes ``ESTABLISHING`` until its silent proposal arrives.
        """
        if self._logged_in:
            raise InvalidStateError("This phone is already logged in.")
        self._logged_in = True
        self._persistent = persistent
        actions: list[Action] = []
        if accept_off_queue and persistent:
            self._move(Trigger.AWAIT_SETUP, actions)
            self._setup_deadline = self._clock.monotonic() + self.settings.setup_timeout
        return actions

    def logout(self) -> list[Action]:
        """The agent logs out: any call is hung up, the connection closed, the platform told."""
        self._require_session()
        actions: list[Action] = []
        if self._state in _ENDABLE:
            dropped = self._call
            if dropped is not None:
                actions.append(HangUpCall(dropped))
            self._end(Trigger.LOGOUT, DownReason.LOGOUT, "logged out", actions, dropped=dropped)
        self._logged_out = True
        self._offers.clear()
        return actions

    def stop(self, *, force: bool = False) -> list[Action]:
        """The agent stops the persistent connection.

        During a call this raises :class:`CallInProgressError` unless ``force``; forced, the call
        is hung up first and the event names it. InvalidStateError when nothing is up.
        """
        self._require_session()
        actions: list[Action] = []
        if self._state is ConnectionState.ACTIVE_CALL:
            assert self._call is not None
            if not force:
                raise CallInProgressError(self._call)
            dropped = self._call
            actions.append(HangUpCall(dropped))
            self._end(
                Trigger.FORCED_STOP,
                DownReason.MANUAL,
                f"stopped by the agent (force); call {dropped} was ended",
                actions,
                dropped=dropped,
            )
            return actions
        if self._state not in (ConnectionState.ESTABLISHING, ConnectionState.PERSISTED):
            raise InvalidStateError(
                f"There is no persistent connection to stop (it is {self._state.value})."
            )
        self._end(Trigger.STOP, DownReason.MANUAL, "stopped by the agent", actions)
        return actions

    # ------------------------------------------------------------------ offers and answers

    def proposal(
        self,
        session_id: str,
        *,
        conversation_id: str | None,
        purpose: Literal["call", "persistent-setup"],
        auto_answer: bool,
    ) -> list[Action]:
        """The platform proposes a media session (a first call, or the silent login set-up)."""
        actions: list[Action] = []
        if not self._accepting_platform_input():
            return actions
        if self._state.is_up:
            # The platform no longer counts on our connection (it proposes a new one): ours is
            # stale on its side, so close it locally without telling it what it already knows.
            self._end(
                Trigger.PLATFORM_DISCONNECTED,
                DownReason.PLATFORM,
                "the platform proposed a new session while ours was up",
                actions,
                tell_platform=False,
            )
        if purpose == "persistent-setup" or conversation_id is None:
            if self._state is ConnectionState.ESTABLISHING and self._setup_session is not None:
                self.ignored += 1  # a set-up is already under way
                return actions
            self._proceed(session_id, None, silent=True, actions=actions)
            return actions
        offer = self._offers.setdefault(conversation_id, _Offer(conversation_id))
        offer.session_id = session_id
        if auto_answer or self.settings.auto_answer or offer.answer_requested:
            self._answer_by_signalling(offer, actions)
        return actions

    def call_alerting(self, conversation_id: str) -> list[Action]:
        """The agent's leg of ``conversation_id`` is alerting (from the notification channel)."""
        actions: list[Action] = []
        if not self._accepting_platform_input():
            return actions
        if conversation_id in self._offers or conversation_id in (self._call, self._answering):
            return actions  # the duplicate first event, or the proposal came first
        offer = _Offer(conversation_id)
        self._offers[conversation_id] = offer
        if self._state is ConnectionState.PERSISTED and self.settings.auto_answer:
            self._answer_by_patch(offer, actions)
        return actions

    def answer(self, conversation_id: str) -> list[Action]:
        """The agent answers ``conversation_id`` (InvalidStateError when it is not ringing)."""
        self._require_session()
        offer = self._offers.get(conversation_id)
        if offer is None:
            raise InvalidStateError(f"Call {conversation_id} is not ringing on this phone.")
        actions: list[Action] = []
        if offer.session_id is not None:
            self._answer_by_signalling(offer, actions)
        elif self._state is ConnectionState.PERSISTED:
            self._answer_by_patch(offer, actions)
        elif self._state is ConnectionState.ACTIVE_CALL:
            raise InvalidStateError(
                f"Call {self._call} is still on the line; hang it up before answering "
                f"{conversation_id}."
            )
        else:
            # No live connection: the platform's proposal for this call is on its way (it is
            # sent with the alerting event, on another socket); proceed when it arrives.
            offer.answer_requested = True
        return actions

    def answer_failed(self, conversation_id: str) -> list[Action]:
        """The answer PATCH for ``conversation_id`` failed: the microphone goes back off."""
        actions: list[Action] = []
        if self._answering == conversation_id:
            self._answering = None
            self._offers.setdefault(conversation_id, _Offer(conversation_id))
            self._sync_microphone(actions)
        return actions

    # ------------------------------------------------------------------ media and call progress

    def media_up(self) -> list[Action]:
        """ICE and DTLS completed: media can flow on the connection."""
        actions: list[Action] = []
        if self._state is not ConnectionState.ESTABLISHING or not self._accepting_platform_input():
            self.ignored += 1
            return actions
        via_call = self._setup_call
        self._setup_deadline = None
        self._setup_session = None
        self._move(Trigger.MEDIA_UP, actions)
        if self._persistent:
            self._up_announced = True
            self._emit(
                PersistentConnectionUp(
                    agent_id=self.agent_id,
                    station_id=self.station_id,
                    via="first_call" if via_call is not None else "login",
                    conversation_id=via_call,
                    at=self._clock.wall(),
                ),
                actions,
            )
        self._restart_idle_timer()
        if self._connected_early is not None:
            early, self._connected_early = self._connected_early, None
            actions += self.call_connected(early)
        return actions

    def setup_failed(self, detail: str) -> list[Action]:
        """Offer/answer, ICE or DTLS failed (or the platform refused the set-up)."""
        actions: list[Action] = []
        if self._state is not ConnectionState.ESTABLISHING:
            self.ignored += 1
            return actions
        self._end(Trigger.SETUP_FAILED, DownReason.SETUP_FAILED, detail, actions)
        return actions

    def call_connected(self, conversation_id: str) -> list[Action]:
        """The platform says the agent's leg of ``conversation_id`` is connected."""
        actions: list[Action] = []
        if not self._accepting_platform_input():
            return actions
        self._offers.pop(conversation_id, None)
        if self._answering == conversation_id:
            self._answering = None
        if self._state is ConnectionState.ESTABLISHING:
            self._connected_early = conversation_id  # media is not up yet; finish that first
            return actions
        if self._state is not ConnectionState.PERSISTED or self._call is not None:
            self.ignored += 1  # connected elsewhere, or a duplicate
            return actions
        self._call = conversation_id
        self._idle_deadline = None
        self._move(Trigger.CALL_CONNECTED, actions)
        self._sync_microphone(actions)
        return actions

    def call_ended(self, conversation_id: str) -> list[Action]:
        """The agent's leg of ``conversation_id`` disconnected (or the offer went away)."""
        actions: list[Action] = []
        self._offers.pop(conversation_id, None)
        if self._answering == conversation_id:
            self._answering = None
        if self._connected_early == conversation_id:
            self._connected_early = None
        if self._call != conversation_id:
            self._sync_microphone(actions)
            return actions
        self._call = None
        self._muted = self._held = False
        if self._persistent:
            self._move(Trigger.CALL_ENDED, actions)
            self._restart_idle_timer()
        else:
            self._move(Trigger.CALL_ENDED_CLOSE, actions)
            actions.append(CloseConnection("call_ended", tell_platform=False))
        self._sync_microphone(actions)
        return actions

    def media_failed(self, detail: str) -> list[Action]:
        """No media arrived for the liveness window: the path is dead."""
        actions: list[Action] = []
        if self._state not in _ENDABLE:
            self.ignored += 1
            return actions
        self._end(
            Trigger.MEDIA_FAILED,
            DownReason.MEDIA_FAILURE,
            detail,
            actions,
            dropped=self._call,
        )
        return actions

    def platform_state(
        self, persistent_state: str, *, detail: str = "", reason: DownReason | None = None
    ) -> list[Action]:
        """The platform reported the connection's state (persistentconnection event, terminate).

        ``DISCONNECTED``/``FAILED`` end ours. ``PERSISTED``/``ACTIVE_CALL`` while we have no
        connection means the platform holds a stale one: we tell it to let go.
        """
        actions: list[Action] = []
        if self._logged_out:
            self.ignored += 1
            return actions
        if persistent_state in ("DISCONNECTED", "FAILED"):
            if self._state not in _ENDABLE:
                self.ignored += 1
                return actions
            failed = persistent_state == "FAILED"
            self._end(
                Trigger.PLATFORM_FAILED if failed else Trigger.PLATFORM_DISCONNECTED,
                reason if reason is not None else DownReason.PLATFORM,
                detail or f"the platform reported {persistent_state}",
                actions,
                tell_platform=False,
                dropped=self._call,
            )
        elif persistent_state in ("PERSISTED", "ACTIVE_CALL") and self._state in (
            ConnectionState.IDLE,
            ConnectionState.DISCONNECTED,
            ConnectionState.FAILED,
        ):
            actions.append(CloseConnection(DownReason.PLATFORM, tell_platform=True))
        else:
            self.ignored += 1
        return actions

    # ------------------------------------------------------------------ the agent's controls

    def set_muted(self, muted: bool) -> list[Action]:
        """Mute or unmute the current call's microphone."""
        self._muted = muted
        actions: list[Action] = []
        self._sync_microphone(actions)
        return actions

    def set_held(self, held: bool) -> list[Action]:
        """Hold or resume the current call (no microphone audio while held)."""
        self._held = held
        actions: list[Action] = []
        self._sync_microphone(actions)
        return actions

    def tick(self) -> list[Action]:
        """Fire whichever timer is due (the inactivity timeout, a set-up that took too long)."""
        now = self._clock.monotonic()
        actions: list[Action] = []
        if self._setup_deadline is not None and now >= self._setup_deadline:
            self._end(
                Trigger.SETUP_FAILED,
                DownReason.SETUP_FAILED,
                f"the media set-up did not complete within {self.settings.setup_timeout:g} s",
                actions,
            )
        elif (
            self._idle_deadline is not None
            and now >= self._idle_deadline
            and self._state is ConnectionState.PERSISTED
        ):
            self._end(
                Trigger.IDLE_TIMEOUT,
                DownReason.IDLE_TIMEOUT,
                f"no call for {self.settings.inactivity_timeout:g} s",
                actions,
            )
        return actions

    # ------------------------------------------------------------------ internals

    def _require_session(self) -> None:
        if not self._logged_in:
            raise InvalidStateError("The phone is not logged in.")
        if self._logged_out:
            raise InvalidStateError("The phone has logged out.")

    def _accepting_platform_input(self) -> bool:
        if self._logged_in and not self._logged_out:
            return True
        self.ignored += 1
        return False

    def _proceed(
        self, session_id: str, conversation_id: str | None, *, silent: bool, actions: list[Action]
    ) -> None:
        self._move(Trigger.PROCEED, actions)
        self._setup_session = session_id
        self._setup_call = conversation_id
        self._setup_deadline = self._clock.monotonic() + self.settings.setup_timeout
        self._idle_deadline = None
        actions.append(Proceed(session_id, silent=silent))

    def _answer_by_signalling(self, offer: _Offer, actions: list[Action]) -> None:
        assert offer.session_id is not None
        del self._offers[offer.conversation_id]
        self._answering = offer.conversation_id
        # The microphone goes live with the answer, so the first packet leaves with the set-up.
        self._proceed(offer.session_id, offer.conversation_id, silent=False, actions=actions)
        self._sync_microphone(actions)

    def _answer_by_patch(self, offer: _Offer, actions: list[Action]) -> None:
        del self._offers[offer.conversation_id]
        self._answering = offer.conversation_id
        # Live before the PATCH leaves: our first packet then reaches the platform with the
        # answer itself instead of a round trip later.
        self._sync_microphone(actions)
        actions.append(AnswerCall(offer.conversation_id))

    def _end(
        self,
        trigger: Trigger,
        reason: DownReason,
        detail: str,
        actions: list[Action],
        *,
        tell_platform: bool = True,
        dropped: str | None = None,
    ) -> None:
        self._move(trigger, actions)
        self._idle_deadline = self._setup_deadline = None
        self._setup_session = self._setup_call = None
        self._connected_early = None
        self._call = self._answering = None
        self._muted = self._held = False
        actions.append(CloseConnection(reason, tell_platform=tell_platform))
        self._sync_microphone(actions)
        if self._persistent and (self._up_announced or reason is DownReason.SETUP_FAILED):
            self._up_announced = False
            self._emit(
                PersistentConnectionDown(
                    agent_id=self.agent_id,
                    station_id=self.station_id,
                    reason=reason,
                    detail=detail,
                    at=self._clock.wall(),
                    dropped_conversation_id=dropped,
                ),
                actions,
            )

    def _move(self, trigger: Trigger, actions: list[Action]) -> None:
        previous = self._state
        self._state = next_state(previous, trigger)
        if self._state is not previous:
            self._emit(
                ConnectionStateChanged(
                    agent_id=self.agent_id,
                    previous=previous,
                    state=self._state,
                    at=self._clock.wall(),
                ),
                actions,
            )

    def _restart_idle_timer(self) -> None:
        if self._persistent and self._state is ConnectionState.PERSISTED:
            self._idle_deadline = self._clock.monotonic() + self.settings.inactivity_timeout
        else:
            self._idle_deadline = None

    def _sync_microphone(self, actions: list[Action]) -> None:
        connected = self._state in _ENDABLE
        on_a_call = self._call is not None or self._answering is not None
        wanted = (
            connected
            and not self._muted
            and not self._held
            and (on_a_call or self.settings.keep_microphone_live)
        )
        if wanted != self._mic_live:
            self._mic_live = wanted
            actions.append(SetMicrophone(wanted))
            self._emit(
                MicrophoneLive(agent_id=self.agent_id, live=wanted, at=self._clock.wall()),
                actions,
            )

    @staticmethod
    def _emit(event: PhoneEvent, actions: list[Action]) -> None:
        actions.append(Emit(event))
