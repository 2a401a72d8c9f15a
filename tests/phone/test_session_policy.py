"""The persistent-connection policy, driven with a manual clock: no sockets, no sleeps."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmphone.clock import ManualClock
from crmphone.errors import InvalidStateError
from crmphone.events import (
    ConnectionState,
    ConnectionStateChanged,
    DownReason,
    MicrophoneLive,
    PersistentConnectionDown,
    PersistentConnectionUp,
)
from crmphone.phone.session import (
    TRANSITIONS,
    Action,
    AnswerCall,
    CallInProgressError,
    CloseConnection,
    ConnectionPolicy,
    Emit,
    HangUpCall,
    PolicySettings,
    Proceed,
    SetMicrophone,
    Trigger,
    next_state,
)

S = ConnectionState


def make(
    *,
    persistent: bool = True,
    accept_off_queue: bool = False,
    clock: ManualClock | None = None,
    **settings_: Any,
) -> tuple[ConnectionPolicy, ManualClock]:
    clock = clock or ManualClock()
    policy = ConnectionPolicy(
        "agent-1", station_id="station-1", settings=PolicySettings(**settings_), clock=clock
    )
    policy.login(accept_off_queue=accept_off_queue, persistent=persistent)
    return policy, clock


def events(actions: list[Action], kind: type) -> list[Any]:
    return [a.event for a in actions if isinstance(a, Emit) and isinstance(a.event, kind)]


def first_call(policy: ConnectionPolicy, cid: str = "c1") -> list[Action]:
    """Ring, propose, answer, media up, connected: a whole first call's set-up."""
    actions = policy.call_alerting(cid)
    actions += policy.proposal("s-" + cid, conversation_id=cid, purpose="call", auto_answer=False)
    if cid in policy.ringing():  # not auto-answered
        actions += policy.answer(cid)
    actions += policy.media_up()
    actions += policy.call_connected(cid)
    return actions


# ---------------------------------------------------------------------------------------- table


def test_every_pair_outside_the_table_raises() -> None:
    for state, trigger in itertools.product(ConnectionState, Trigger):
        if (state, trigger) in TRANSITIONS:
            assert next_state(state, trigger) is TRANSITIONS[state, trigger]
        else:
            with pytest.raises(InvalidStateError, match=state.value):
                next_state(state, trigger)


def test_every_state_but_idle_is_reachable_and_every_up_state_can_end() -> None:
    targets = set(TRANSITIONS.values())
    assert targets == set(ConnectionState) - {S.IDLE}
    for state in (S.ESTABLISHING, S.PERSISTED, S.ACTIVE_CALL):
        assert (state, Trigger.LOGOUT) in TRANSITIONS
        assert (state, Trigger.MEDIA_FAILED) in TRANSITIONS


# ---------------------------------------------------------------------------------------- activation


def test_first_call_sets_up_then_persists() -> None:
    policy, _ = make()
    assert policy.state is S.IDLE
    ring = policy.call_alerting("c1")
    assert ring == []  # no connection: the proposal will carry the set-up
    assert policy.route("c1") == "unknown"
    proposed = policy.proposal("s1", conversation_id="c1", purpose="call", auto_answer=False)
    assert proposed == []  # no auto-answer: waits for the agent
    answered = policy.answer("c1")
    assert Proceed("s1", silent=False) in answered
    assert SetMicrophone(True) in answered
    assert policy.state is S.ESTABLISHING
    up = policy.media_up()
    [event] = events(up, PersistentConnectionUp)
    assert (event.via, event.conversation_id) == ("first_call", "c1")
    assert policy.state is S.PERSISTED
    policy.call_connected("c1")
    assert policy.state is S.ACTIVE_CALL
    assert policy.current_call == "c1"
    ended = policy.call_ended("c1")
    assert policy.state is S.PERSISTED
    assert not [a for a in ended if isinstance(a, CloseConnection)]
    assert SetMicrophone(False) in ended


def test_later_calls_are_answered_with_a_patch_and_no_set_up() -> None:
    policy, _ = make()
    first_call(policy)
    policy.call_ended("c1")
    for n in range(2, 12):
        cid = f"c{n}"
        assert policy.call_alerting(cid) == []
        assert policy.route(cid) == "patch"
        actions = policy.answer(cid)
        assert not [a for a in actions if isinstance(a, Proceed)]
        # the microphone is switched on before the PATCH goes out
        kinds = [type(a) for a in actions if not isinstance(a, Emit)]
        assert kinds == [SetMicrophone, AnswerCall]
        policy.call_connected(cid)
        assert policy.state is S.ACTIVE_CALL
        policy.call_ended(cid)
        assert policy.state is S.PERSISTED


def test_login_with_accept_off_queue_awaits_a_silent_setup() -> None:
    policy, _ = make(accept_off_queue=True)
    assert policy.state is S.ESTABLISHING
    actions = policy.proposal(
        "s0", conversation_id=None, purpose="persistent-setup", auto_answer=True
    )
    assert actions == [Proceed("s0", silent=True)]
    assert not policy.microphone_live  # a set-up is not a call
    up = policy.media_up()
    [event] = events(up, PersistentConnectionUp)
    assert (event.via, event.conversation_id) == ("login", None)
    assert policy.ringing() == ()


def test_login_without_permission_waits_for_the_first_call() -> None:
    policy, _ = make(accept_off_queue=False)
    assert policy.state is S.IDLE
    assert policy.next_deadline() is None


def test_login_setup_that_never_comes_fails_after_the_setup_timeout() -> None:
    policy, clock = make(accept_off_queue=True, setup_timeout=15)
    clock.advance(14.999)
    assert policy.tick() == []
    clock.advance(0.001)
    actions = policy.tick()
    assert policy.state is S.FAILED
    [down] = events(actions, PersistentConnectionDown)
    assert down.reason is DownReason.SETUP_FAILED
    assert "15 s" in down.detail


def test_non_persistent_station_closes_after_each_call_without_persistent_events() -> None:
    policy, _ = make(persistent=False, accept_off_queue=True)
    assert policy.state is S.IDLE  # no login set-up for a station that does not persist
    actions = first_call(policy)
    actions += policy.call_ended("c1")
    assert CloseConnection("call_ended", tell_platform=False) in actions
    assert policy.state is S.DISCONNECTED
    assert not events(actions, PersistentConnectionUp)
    assert not events(actions, PersistentConnectionDown)
    # the next call sets up again
    policy.call_alerting("c2")
    policy.proposal("s2", conversation_id="c2", purpose="call", auto_answer=True)
    assert policy.state is S.ESTABLISHING


# ---------------------------------------------------------------------------------------- timeout


def test_inactivity_timeout_closes_and_the_next_call_sets_up_again() -> None:
    policy, clock = make()
    first_call(policy)
    policy.call_ended("c1")
    assert policy.next_deadline() == pytest.approx(clock.monotonic() + 600)
    clock.advance(599.999999)
    assert policy.tick() == []
    clock.advance(0.000001)
    actions = policy.tick()
    assert policy.state is S.DISCONNECTED
    assert CloseConnection(DownReason.IDLE_TIMEOUT, tell_platform=True) in actions
    [down] = events(actions, PersistentConnectionDown)
    assert down.reason is DownReason.IDLE_TIMEOUT
    assert policy.next_deadline() is None
    # next call: a proposal again, like a first call
    policy.call_alerting("c2")
    actions = policy.proposal("s2", conversation_id="c2", purpose="call", auto_answer=True)
    assert Proceed("s2", silent=False) in actions


def test_timer_restarts_at_call_start_and_end_and_never_fires_during_a_call() -> None:
    policy, clock = make(inactivity_timeout=10)
    first_call(policy)
    assert policy.next_deadline() is None  # a call is on: no idle timer
    clock.advance(3600)
    assert policy.tick() == []
    policy.call_ended("c1")
    clock.advance(9)
    policy.call_alerting("c2")
    policy.answer("c2")
    policy.call_connected("c2")
    clock.advance(20)
    assert policy.tick() == []
    policy.call_ended("c2")
    clock.advance(9.9)
    assert policy.tick() == []
    assert policy.state is S.PERSISTED
    clock.advance(0.1)
    policy.tick()
    assert policy.state is S.DISCONNECTED


def test_setup_timeout_during_a_first_call() -> None:
    policy, clock = make(setup_timeout=5)
    policy.call_alerting("c1")
    policy.proposal("s1", conversation_id="c1", purpose="call", auto_answer=True)
    clock.advance(5)
    actions = policy.tick()
    assert policy.state is S.FAILED
    assert CloseConnection(DownReason.SETUP_FAILED, tell_platform=True) in actions
    assert SetMicrophone(False) in actions


# ---------------------------------------------------------------------------------------- ending


def test_stop_during_a_call_is_refused_then_forced() -> None:
    policy, _ = make()
    first_call(policy)
    with pytest.raises(CallInProgressError, match="force=True") as caught:
        policy.stop()
    assert caught.value.conversation_id == "c1"
    assert policy.state is S.ACTIVE_CALL  # refusing changed nothing
    actions = policy.stop(force=True)
    assert actions.index(HangUpCall("c1")) < actions.index(
        CloseConnection(DownReason.MANUAL, tell_platform=True)
    )
    [down] = events(actions, PersistentConnectionDown)
    assert down.reason is DownReason.MANUAL
    assert down.dropped_conversation_id == "c1"
    assert "c1" in down.detail
    assert policy.state is S.DISCONNECTED
    assert not policy.microphone_live


def test_stop_between_calls_tells_the_platform() -> None:
    policy, _ = make()
    first_call(policy)
    policy.call_ended("c1")
    actions = policy.stop()
    assert CloseConnection(DownReason.MANUAL, tell_platform=True) in actions
    assert not [a for a in actions if isinstance(a, HangUpCall)]
    with pytest.raises(InvalidStateError, match="no persistent connection"):
        policy.stop()


def test_logout_hangs_up_closes_and_tells_the_platform() -> None:
    policy, _ = make()
    first_call(policy)
    actions = policy.logout()
    assert HangUpCall("c1") in actions
    assert CloseConnection(DownReason.LOGOUT, tell_platform=True) in actions
    [down] = events(actions, PersistentConnectionDown)
    assert down.reason is DownReason.LOGOUT
    with pytest.raises(InvalidStateError, match="logged out"):
        policy.answer("c9")
    assert policy.call_alerting("c9") == []  # late platform input is ignored, not raised
    assert policy.ignored == 1


def test_logout_when_nothing_is_up_does_nothing() -> None:
    policy, _ = make()
    assert policy.logout() == []


def test_media_failure_mid_call_fails_the_connection() -> None:
    policy, _ = make()
    first_call(policy)
    actions = policy.media_failed("no RTP or RTCP for 2.5 s")
    assert policy.state is S.FAILED
    assert CloseConnection(DownReason.MEDIA_FAILURE, tell_platform=True) in actions
    [down] = events(actions, PersistentConnectionDown)
    assert down.dropped_conversation_id == "c1"
    assert policy.current_call is None
    # recovery: the next call is a first call again
    policy.call_alerting("c2")
    policy.proposal("s2", conversation_id="c2", purpose="call", auto_answer=True)
    assert policy.state is S.ESTABLISHING


def test_platform_disconnect_ends_ours_without_echoing_it_back() -> None:
    policy, _ = make()
    first_call(policy)
    policy.call_ended("c1")
    actions = policy.platform_state("DISCONNECTED", reason=DownReason.IDLE_TIMEOUT)
    assert CloseConnection(DownReason.IDLE_TIMEOUT, tell_platform=False) in actions
    assert policy.state is S.DISCONNECTED
    assert policy.platform_state("DISCONNECTED") == []  # the duplicate is ignored


def test_platform_failed_moves_to_failed() -> None:
    policy, _ = make()
    first_call(policy)
    policy.platform_state("FAILED", detail="edge lost the peer")
    assert policy.state is S.FAILED


def test_platform_holding_a_stale_connection_is_told_to_let_go() -> None:
    policy, _ = make()
    actions = policy.platform_state("PERSISTED")
    assert actions == [CloseConnection(DownReason.PLATFORM, tell_platform=True)]
    assert policy.state is S.IDLE


def test_a_new_proposal_while_up_replaces_the_stale_connection() -> None:
    policy, _ = make()
    first_call(policy)
    policy.call_ended("c1")
    actions = policy.proposal("s9", conversation_id="c9", purpose="call", auto_answer=True)
    closes = [a for a in actions if isinstance(a, CloseConnection)]
    assert closes == [CloseConnection(DownReason.PLATFORM, tell_platform=False)]
    assert Proceed("s9", silent=False) in actions
    assert policy.state is S.ESTABLISHING


# ---------------------------------------------------------------------------------------- answering


def test_auto_answer_over_a_persistent_connection() -> None:
    policy, _ = make(auto_answer=True)
    first_call(policy)
    policy.call_ended("c1")
    actions = policy.call_alerting("c2")
    assert AnswerCall("c2") in actions
    assert policy.call_alerting("c2") == []  # the first state arrives twice: answered once


def test_auto_answer_flag_on_the_proposal_proceeds_at_once() -> None:
    policy, _ = make(auto_answer=False)
    actions = policy.proposal("s1", conversation_id="c1", purpose="call", auto_answer=True)
    assert Proceed("s1", silent=False) in actions


def test_answer_before_the_proposal_arrives_proceeds_when_it_does() -> None:
    policy, _ = make()
    policy.call_alerting("c1")
    assert policy.answer("c1") == []
    actions = policy.proposal("s1", conversation_id="c1", purpose="call", auto_answer=False)
    assert Proceed("s1", silent=False) in actions


def test_connected_before_media_up_is_applied_after_it() -> None:
    policy, _ = make()
    policy.call_alerting("c1")
    policy.proposal("s1", conversation_id="c1", purpose="call", auto_answer=True)
    assert policy.call_connected("c1") == []
    assert policy.state is S.ESTABLISHING
    policy.media_up()
    assert policy.state is S.ACTIVE_CALL


def test_answering_a_call_that_is_not_ringing_raises() -> None:
    policy, _ = make()
    with pytest.raises(InvalidStateError, match="not ringing"):
        policy.answer("nope")


def test_answer_while_another_call_is_on_the_line_raises() -> None:
    policy, _ = make()
    first_call(policy)
    policy.call_alerting("c2")
    with pytest.raises(InvalidStateError, match="still on the line"):
        policy.answer("c2")


def test_a_failed_answer_patch_turns_the_microphone_back_off() -> None:
    policy, _ = make()
    first_call(policy)
    policy.call_ended("c1")
    policy.call_alerting("c2")
    policy.answer("c2")
    assert policy.microphone_live
    actions = policy.answer_failed("c2")
    assert SetMicrophone(False) in actions
    assert "c2" in policy.ringing()  # still ringing: the agent may try again


def test_missed_call_is_forgotten() -> None:
    policy, _ = make()
    policy.call_alerting("c1")
    policy.call_ended("c1")
    assert policy.ringing() == ()


# ---------------------------------------------------------------------------------------- microphone


def test_microphone_follows_calls_mute_and_hold() -> None:
    policy, _ = make()
    actions = first_call(policy)
    assert [e.live for e in events(actions, MicrophoneLive)] == [True]
    assert [e.live for e in events(policy.set_muted(True), MicrophoneLive)] == [False]
    assert events(policy.set_held(True), MicrophoneLive) == []
    assert events(policy.set_muted(False), MicrophoneLive) == []  # still held
    assert [e.live for e in events(policy.set_held(False), MicrophoneLive)] == [True]
    assert [e.live for e in events(policy.call_ended("c1"), MicrophoneLive)] == [False]


def test_microphone_can_be_kept_live_between_calls() -> None:
    policy, _ = make(keep_microphone_live=True)
    first_call(policy)
    assert events(policy.call_ended("c1"), MicrophoneLive) == []
    assert policy.microphone_live
    actions = policy.stop()
    assert [e.live for e in events(actions, MicrophoneLive)] == [False]


def test_every_state_change_is_an_event() -> None:
    policy, _ = make()
    actions = first_call(policy) + policy.call_ended("c1") + policy.stop()
    changes = [(e.previous, e.state) for e in events(actions, ConnectionStateChanged)]
    assert changes == [
        (S.IDLE, S.ESTABLISHING),
        (S.ESTABLISHING, S.PERSISTED),
        (S.PERSISTED, S.ACTIVE_CALL),
        (S.ACTIVE_CALL, S.PERSISTED),
        (S.PERSISTED, S.DISCONNECTED),
    ]


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="inactivity_timeout"):
        PolicySettings(inactivity_timeout=0)


def test_double_login_raises() -> None:
    policy, _ = make()
    with pytest.raises(InvalidStateError, match="already logged in"):
        policy.login(accept_off_queue=False, persistent=True)


# ---------------------------------------------------------------------------------------- properties

_STEPS = st.lists(
    st.sampled_from(
        [
            "alert",
            "propose",
            "setup",
            "answer",
            "media_up",
            "connected",
            "ended",
            "media_failed",
            "platform_down",
            "stop",
            "force_stop",
            "mute",
            "unmute",
            "tick",
            "wait",
        ]
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(steps=_STEPS, persistent=st.booleans(), keep_live=st.booleans())
def test_any_sequence_keeps_the_invariants(
    steps: list[str], persistent: bool, keep_live: bool
) -> None:
    policy, clock = make(
        persistent=persistent, keep_microphone_live=keep_live, inactivity_timeout=5
    )
    ups = downs = 0
    n = 0
    for step in steps:
        cid = f"c{n}"
        try:
            match step:
                case "alert":
                    n += 1
                    actions = policy.call_alerting(f"c{n}")
                case "propose":
                    actions = policy.proposal(
                        f"s{n}", conversation_id=cid, purpose="call", auto_answer=False
                    )
                case "setup":
                    actions = policy.proposal(
                        "s-setup",
                        conversation_id=None,
                        purpose="persistent-setup",
                        auto_answer=True,
                    )
                case "answer":
                    actions = policy.answer(cid)
                case "media_up":
                    actions = policy.media_up()
                case "connected":
                    actions = policy.call_connected(cid)
                case "ended":
                    actions = policy.call_ended(cid)
                case "media_failed":
                    actions = policy.media_failed("dead")
                case "platform_down":
                    actions = policy.platform_state("DISCONNECTED")
                case "stop":
                    actions = policy.stop()
                case "force_stop":
                    actions = policy.stop(force=True)
                case "mute":
                    actions = policy.set_muted(True)
                case "unmute":
                    actions = policy.set_muted(False)
                case "tick":
                    actions = policy.tick()
                case _:
                    clock.advance(3)
                    actions = policy.tick()
        except InvalidStateError:
            continue  # refused user input changes nothing observable
        ups += len(events(actions, PersistentConnectionUp))
        downs += len(events(actions, PersistentConnectionDown))
        # Up and Down alternate: the icon can never be on twice or off twice.
        assert downs <= ups + 1
        assert ups <= downs + 1
        # the microphone is never live without a connection, nor while muted
        if policy.microphone_live:
            assert policy.state in (S.ESTABLISHING, S.PERSISTED, S.ACTIVE_CALL)
            assert not policy.muted
        if policy.state is S.ACTIVE_CALL:
            assert policy.current_call is not None
        else:
            assert policy.current_call is None
        if not persistent:
            assert ups == 0
        if policy.state is not S.PERSISTED and policy.state is not S.ESTABLISHING:
            assert policy.next_deadline() is None
