"""The call tracker, rule by rule: conversation updates in, each call event exactly once out."""

from __future__ import annotations

import itertools
import logging
from datetime import timedelta
from typing import Any

import attrs
import pytest
from call_scenarios import (
    AGENT,
    ANI,
    DNIS,
    OTHER_AGENT,
    QUEUE,
    T0,
    Scenario,
    at,
    conversation,
    customer,
    leg,
    names,
)
from hypothesis import given
from hypothesis import strategies as st

from crmphone.calls import (
    _BUILDERS,
    _RANK,
    TRANSITIONS,
    CallState,
    CallTracker,
    Step,
    _Observation,
    _plan,
)
from crmphone.clock import ManualClock
from crmphone.errors import InvalidStateError
from crmphone.events import (
    CallAlerting,
    CallConnected,
    CallDirection,
    CallEnded,
    CallEvent,
    CallHeld,
    CallResumed,
    CallTransferred,
    CallWrapup,
    HungUpBy,
)
from crmphone.notifications.messages import TopicEvent
from crmphone.sandbox.conversation import Move

ANSWERED = ("call.alerting", "call.connected", "call.ended", "call.wrapup")


def tracker(agent_ids: set[str] | None = None, **options: Any) -> tuple[CallTracker, ManualClock]:
    """A tracker of ``AGENT`` (or ``agent_ids``) on a manual clock."""
    clock = ManualClock(start_wall=T0 + timedelta(hours=1))
    return CallTracker({AGENT} if agent_ids is None else agent_ids, clock, **options), clock


def feed_all(calls: CallTracker, scenario: Scenario, *, generic: bool = False) -> list[CallEvent]:
    """Every snapshot of ``scenario`` through ``calls`` as topic events, in order."""
    events: list[CallEvent] = []
    for index in range(len(scenario.snapshots)):
        events.extend(calls.feed_event(scenario.event(index, generic=generic)))
    return events


def one(events: list[CallEvent], kind: type[Any]) -> Any:
    """The single event of class ``kind`` in ``events``."""
    (found,) = [event for event in events if isinstance(event, kind)]
    return found


# ------------------------------------------------------------------------- the lifecycle


def test_answered_inbound_call_yields_each_event_once_with_its_facts() -> None:
    """alerting twice, connected, disconnected, terminated, wrap-up → four events, platform-dated."""
    scenario = Scenario.inbound().play(Move.ANSWER, Move.CUSTOMER_HANGUP, Move.FINISH_WRAPUP)
    calls, _ = tracker()
    events = feed_all(calls, scenario)
    assert tuple(names(events)) == ANSWERED
    alerting = one(events, CallAlerting)
    agent_leg = scenario.conversation.agent.id
    assert (alerting.conversation_id, alerting.agent_id, alerting.participant_id) == (
        scenario.id,
        AGENT,
        agent_leg,
    )
    assert alerting.at == T0
    assert alerting.direction is CallDirection.INBOUND
    assert (alerting.ani, alerting.dnis, alerting.customer_number) == (ANI, DNIS, ANI)
    assert (alerting.queue_id, alerting.queue_name, alerting.caller_name) == (
        QUEUE,
        "Support",
        "Customer",
    )
    connected = one(events, CallConnected)
    assert connected.at == connected.connected_at == at(10)
    ended = one(events, CallEnded)
    assert (ended.started_at, ended.connected_at, ended.ended_at, ended.at) == (
        T0,
        at(10),
        at(20),
        at(20),
    )
    assert ended.duration_seconds == 10
    assert (ended.who_hung_up, ended.disconnect_type) == (HungUpBy.CUSTOMER, "peer")
    assert (ended.answered, ended.missed) == (True, False)
    wrapup = one(events, CallWrapup)
    assert (wrapup.code, wrapup.notes, wrapup.duration_seconds) == (
        "Resolved",
        "Logged by the sandbox agent.",
        10,
    )
    assert calls.stats.events == 4
    assert calls.live_conversation_ids() == set()


def test_same_state_twice_emits_nothing_the_second_time() -> None:
    """The opening alerting arrives twice, as on Genesys: one CallAlerting."""
    scenario = Scenario.inbound()
    calls, _ = tracker()
    assert names(calls.feed_event(scenario.event(0))) == ["call.alerting"]
    assert calls.feed_event(scenario.event(1)) == []
    assert calls.feed_event(scenario.event(0)) == []
    assert calls.stats.duplicates == 2


def test_disconnected_then_terminated_is_one_call_ended() -> None:
    """The back-to-back disconnected and terminated updates end the call once."""
    scenario = Scenario.inbound().play(Move.ANSWER, Move.AGENT_HANGUP)
    *_, disconnected, terminated = scenario.snapshots
    assert disconnected.agent_state == "disconnected"
    assert terminated.agent_state == "terminated"
    calls, _ = tracker()
    events = feed_all(calls, scenario)
    assert names(events) == ["call.alerting", "call.connected", "call.ended"]
    assert one(events, CallEnded).who_hung_up is HungUpBy.AGENT


def test_wrapup_after_end_is_one_call_wrapup_and_ends_liveness() -> None:
    """An ended call awaiting wrap-up stays live (to be re-read); the wrap-up comes once."""
    scenario = Scenario.inbound().play(Move.ANSWER, Move.CUSTOMER_HANGUP, Move.FINISH_WRAPUP)
    calls, _ = tracker()
    for index in range(len(scenario.snapshots) - 1):
        calls.feed_event(scenario.event(index))
    assert calls.state(scenario.id, scenario.conversation.agent.id) is CallState.ENDED
    assert calls.live_conversation_ids() == {scenario.id}
    assert names(calls.feed_event(scenario.event())) == ["call.wrapup"]
    assert calls.feed_event(scenario.event()) == []
    assert calls.live_conversation_ids() == set()


@pytest.mark.parametrize(
    ("move", "who", "disconnect_type"),
    [
        (Move.ALERT_TIMEOUT, HungUpBy.SYSTEM, "timeout"),
        (Move.REJECT, HungUpBy.AGENT, "client"),
        (Move.CUSTOMER_HANGUP, HungUpBy.CUSTOMER, "peer"),
    ],
)
def test_unanswered_inbound_call_is_missed(move: Move, who: HungUpBy, disconnect_type: str) -> None:
    """Timed out, declined or abandoned while ringing: CallEnded(missed, not answered), no wrap-up."""
    scenario = Scenario.inbound().play(move)
    calls, _ = tracker()
    events = feed_all(calls, scenario)
    assert names(events) == ["call.alerting", "call.ended"]
    ended = one(events, CallEnded)
    assert (ended.answered, ended.missed, ended.duration_seconds) == (False, True, 0)
    assert ended.connected_at is None
    assert (ended.who_hung_up, ended.disconnect_type) == (who, disconnect_type)
    assert calls.live_conversation_ids() == set()


def test_direct_call_to_a_user_leg_is_tracked() -> None:
    """A call without a queue rings the agent's ``user`` leg; it is followed like an agent leg."""
    scenario = Scenario.inbound(queue=False).play(Move.ANSWER, Move.AGENT_HANGUP)
    assert scenario.conversation.agent.purpose == "user"
    calls, _ = tracker()
    events = feed_all(calls, scenario)
    assert names(events) == ["call.alerting", "call.connected", "call.ended"]
    alerting = one(events, CallAlerting)
    assert (alerting.queue_id, alerting.queue_name) == (None, None)


def test_outbound_call_alerts_while_dialing_and_connects_when_the_customer_answers() -> None:
    """Dialing is the outbound offer; the customer's number is the called one."""
    scenario = Scenario.outbound().play(Move.ANSWER, Move.AGENT_HANGUP, Move.FINISH_WRAPUP)
    calls, _ = tracker()
    events = feed_all(calls, scenario)
    assert tuple(names(events)) == ANSWERED
    alerting = one(events, CallAlerting)
    assert alerting.direction is CallDirection.OUTBOUND
    assert (alerting.ani, alerting.dnis, alerting.customer_number) == (DNIS, ANI, ANI)
    ended = one(events, CallEnded)
    assert (ended.direction, ended.who_hung_up, ended.answered) == (
        CallDirection.OUTBOUND,
        HungUpBy.AGENT,
        True,
    )


def test_outbound_call_nobody_answered_is_unanswered_but_not_missed() -> None:
    """The agent gives up before the customer picks up: not answered, and not a missed call."""
    scenario = Scenario.outbound().play(Move.REJECT)
    calls, _ = tracker()
    ended = one(feed_all(calls, scenario), CallEnded)
    assert (ended.answered, ended.missed) == (False, False)


def test_outbound_agent_leg_up_before_the_customer_answers_is_not_yet_connected() -> None:
    """Genesys shows the agent's leg connected while the customer's phone still rings."""
    calls, _ = tracker()
    agent_leg = leg("p-agent", "connected", queue=None, direction="outbound", connected=1)
    ringing = customer("contacting", connected=None, direction="outbound")
    assert names(calls.feed(conversation(ringing, agent_leg))) == ["call.alerting"]
    answered = customer("connected", connected=8, direction="outbound")
    events = calls.feed(conversation(answered, agent_leg))
    assert names(events) == ["call.connected"]
    assert one(events, CallConnected).connected_at == at(8)


# ------------------------------------------------------------------------- order and gaps


def test_older_updates_after_newer_ones_change_nothing() -> None:
    """Out of order: the end first, then the alerting and connected updates it superseded."""
    scenario = Scenario.inbound().play(Move.ANSWER, Move.CUSTOMER_HANGUP)
    calls, _ = tracker()
    events = calls.feed_event(scenario.event(-1))
    assert names(events) == ["call.alerting", "call.connected", "call.ended"]
    for index in range(len(scenario.snapshots)):
        assert calls.feed_event(scenario.event(index)) == []
    assert calls.stats.stale == 3  # alerting twice, connected (disconnected is the same progress)


def test_a_wrapup_seen_first_is_not_undone_by_a_later_terminated_without_it() -> None:
    """A terminated update without the wrap-up, arriving after the one with it, is stale."""
    scenario = Scenario.inbound().play(Move.ANSWER, Move.CUSTOMER_HANGUP, Move.FINISH_WRAPUP)
    calls, _ = tracker()
    assert tuple(names(calls.feed_event(scenario.event(-1)))) == ANSWERED
    assert calls.feed_event(scenario.event(-2)) == []
    assert calls.feed_event(scenario.event(-3)) == []


def test_connected_time_counts_even_when_the_state_lags() -> None:
    """Progress is read from timestamps too: a connectedTime means the call was answered."""
    calls, _ = tracker()
    lagging = leg("p-agent", "alerting", connected=5)
    events = calls.feed(conversation(customer(), lagging))
    assert names(events) == ["call.alerting", "call.connected"]


def test_resync_emits_exactly_the_missed_events_in_order() -> None:
    """Seen ringing, then a gap: the REST re-read of the wrapped-up call yields the rest, once."""
    scenario = Scenario.inbound().play(Move.ANSWER, Move.CUSTOMER_HANGUP, Move.FINISH_WRAPUP)
    calls, _ = tracker()
    calls.feed_event(scenario.event(0))
    assert calls.live_conversation_ids() == {scenario.id}
    events = calls.resync([scenario.calls(-1)])
    assert names(events) == ["call.connected", "call.ended", "call.wrapup"]
    assert calls.resync([scenario.calls(-1)]) == []
    # Events that were in flight during the gap arrive after the re-read: all stale.
    assert feed_all(calls, scenario) == []


def test_resync_of_a_call_still_talking_emits_only_the_connect() -> None:
    """Connected during the gap and still going: CallConnected only; the end comes later, once."""
    scenario = Scenario.inbound().play(Move.ANSWER, Move.CUSTOMER_HANGUP)
    calls, _ = tracker()
    calls.feed_event(scenario.event(0))
    assert names(calls.resync([scenario.calls(2)])) == ["call.connected"]
    assert names(feed_all(calls, scenario)) == ["call.ended"]


def test_forget_ends_a_vanished_call_with_an_unknown_party() -> None:
    """A live call that answers 404 on the re-read is ended, dated now, by nobody known."""
    scenario = Scenario.inbound().play(Move.ANSWER)
    calls, clock = tracker()
    feed_all(calls, scenario)
    clock.advance(30)
    events = calls.forget(scenario.id, "404 on re-read")
    ended = one(events, CallEnded)
    assert names(events) == ["call.ended"]
    assert (ended.who_hung_up, ended.disconnect_type) == (HungUpBy.UNKNOWN, None)
    assert ended.ended_at == clock.wall()
    assert (ended.answered, ended.missed) == (True, False)
    assert ended.duration_seconds == round((clock.wall() - at(10)).total_seconds())
    assert calls.live_conversation_ids() == set()
    assert calls.forget(scenario.id) == []
    assert calls.forget("never-seen") == []
    # If it reappears after all, nothing is emitted twice.
    assert feed_all(calls, scenario) == []


def test_forget_a_ringing_call_counts_it_missed() -> None:
    """A ringing inbound call that vanished was never answered."""
    scenario = Scenario.inbound()
    calls, _ = tracker()
    feed_all(calls, scenario)
    ended = one(calls.forget(scenario.id), CallEnded)
    assert (ended.answered, ended.missed) == (False, True)


def test_forget_an_ended_call_awaiting_wrapup_emits_nothing_and_stops_waiting() -> None:
    """The call ended; its wrap-up will never be read: no event, no longer live."""
    scenario = Scenario.inbound().play(Move.ANSWER, Move.CUSTOMER_HANGUP)
    calls, _ = tracker()
    feed_all(calls, scenario)
    assert calls.live_conversation_ids() == {scenario.id}
    assert calls.forget(scenario.id) == []
    assert calls.live_conversation_ids() == set()


# ------------------------------------------------------------------------- hold and transfer


def test_hold_and_resume_alternate_and_count_their_occurrences() -> None:
    """Each hold and resume is an event; the occurrence keeps their keys apart."""
    scenario = Scenario.inbound().play(
        Move.ANSWER, Move.HOLD, Move.UNHOLD, Move.HOLD, Move.UNHOLD, Move.AGENT_HANGUP
    )
    calls, _ = tracker()
    events = feed_all(calls, scenario)
    assert names(events) == [
        "call.alerting",
        "call.connected",
        "call.held",
        "call.resumed",
        "call.held",
        "call.resumed",
        "call.ended",
    ]
    holds = [event for event in events if isinstance(event, CallHeld | CallResumed)]
    assert [event.occurrence for event in holds] == [1, 1, 2, 2]
    assert len({event.key for event in events}) == len(events)


def test_a_call_ending_on_hold_ends_without_a_resume() -> None:
    """The customer hangs up while held: CallEnded straight from held."""
    scenario = Scenario.inbound().play(Move.ANSWER, Move.HOLD, Move.CUSTOMER_HANGUP)
    calls, _ = tracker()
    assert names(feed_all(calls, scenario))[-2:] == ["call.held", "call.ended"]


def test_first_seen_on_hold_yields_alerting_connected_held() -> None:
    """A call first seen held (after a gap) gets every step up to hold, in order."""
    calls, _ = tracker()
    held = leg("p-agent", "connected", connected=3, held=True)
    events = calls.feed(conversation(customer(), held))
    assert names(events) == ["call.alerting", "call.connected", "call.held"]


def test_blind_transfer_to_another_agent() -> None:
    """The agent's leg ends with disconnectType transfer while the next agent's leg alerts."""
    calls = CallTracker(None, ManualClock(start_wall=T0))
    talking = leg("p-a", "connected", connected=2)
    assert names(calls.feed(conversation(customer(), talking))) == [
        "call.alerting",
        "call.connected",
    ]
    transferred = leg("p-a", "disconnected", connected=2, ended=9, disconnect_type="transfer")
    target = leg("p-b", "alerting", user=OTHER_AGENT, start=9)
    events = calls.feed(conversation(customer(), transferred, target))
    assert names(events) == ["call.transferred", "call.ended", "call.alerting"]
    transfer = one(events, CallTransferred)
    assert (transfer.agent_id, transfer.to_user_id, transfer.to_queue_id) == (
        AGENT,
        OTHER_AGENT,
        None,
    )
    assert transfer.at == at(9)
    ended = next(event for event in events if isinstance(event, CallEnded))
    assert (ended.who_hung_up, ended.disconnect_type, ended.answered) == (
        HungUpBy.AGENT,
        "transfer",
        True,
    )
    assert [e.agent_id for e in events if isinstance(e, CallAlerting)] == [OTHER_AGENT]


def test_transfer_to_a_queue_and_to_an_outside_number() -> None:
    """The target is the newest leg still in the call: a queue (acd) or an external number."""
    for target, expected in [
        (leg("p-q", "connected", purpose="acd", user=None, queue="queue-2", start=9), "queue-2"),
        (
            leg(
                "p-x",
                "contacting",
                purpose="external",
                user=None,
                queue=None,
                start=9,
                address="tel:+15559990000",
            ),
            "+15559990000",
        ),
    ]:
        calls, _ = tracker()
        calls.feed(conversation(customer(), leg("p-a", "connected", connected=2)))
        ended = leg("p-a", "disconnected", connected=2, ended=9, disconnect_type="transfer")
        transfer = one(calls.feed(conversation(customer(), ended, target)), CallTransferred)
        assert expected in (transfer.to_queue_id, transfer.to_address)


def test_transfer_with_no_visible_target_says_so() -> None:
    """No candidate leg in the update: the target fields stay None."""
    calls, _ = tracker()
    ended = leg("p-a", "terminated", connected=2, ended=9, disconnect_type="transfer")
    transfer = one(calls.feed(conversation(customer(), ended)), CallTransferred)
    assert (transfer.to_user_id, transfer.to_queue_id, transfer.to_address) == (None, None, None)


def test_a_ringing_leg_that_ends_in_transfer_is_missed_not_transferred() -> None:
    """The platform moved an unanswered offer elsewhere: the agent never had the call."""
    calls, _ = tracker()
    calls.feed(conversation(customer(), leg("p-a", "alerting")))
    events = calls.feed(
        conversation(customer(), leg("p-a", "disconnected", ended=5, disconnect_type="transfer"))
    )
    assert names(events) == ["call.ended"]
    assert one(events, CallEnded).missed


# ------------------------------------------------------------------------- several agent legs


def test_another_agents_unanswered_offer_in_the_body_is_ignored() -> None:
    """Offered to B first (no connectedTime), then to A: A's topic shows both; only A counts."""
    calls, _ = tracker()
    b_missed = leg("p-b", "disconnected", user=OTHER_AGENT, ended=5, disconnect_type="timeout")
    a_ringing = leg("p-a", "alerting", start=6)
    body = conversation(customer(), b_missed, a_ringing)
    events = calls.feed_event(TopicEvent(f"v2.users.{AGENT}.conversations.calls", _raw(body)))
    assert names(events) == ["call.alerting"]
    assert one(events, CallAlerting).participant_id == "p-a"


def test_on_a_user_topic_only_that_users_legs_count_even_untracked_by_filter() -> None:
    """With every agent tracked, B's topic moves only B's leg; the same body on A's moves A's."""
    calls = CallTracker(None, ManualClock())
    body = _raw(
        conversation(
            customer(),
            leg("p-b", "disconnected", user=OTHER_AGENT, ended=5, disconnect_type="timeout"),
            leg("p-a", "alerting", start=6),
        )
    )
    b_events = calls.feed_event(TopicEvent(f"v2.users.{OTHER_AGENT}.conversations.calls", body))
    assert [(e.name, e.agent_id) for e in b_events] == [
        ("call.alerting", OTHER_AGENT),
        ("call.ended", OTHER_AGENT),
    ]
    a_events = calls.feed_event(TopicEvent(f"v2.users.{AGENT}.conversations.calls", body))
    assert [(e.name, e.agent_id) for e in a_events] == [("call.alerting", AGENT)]


def test_the_same_agent_offered_twice_gets_one_machine_per_leg() -> None:
    """A's first offer timed out, the call came back to A: the changed leg moves, keys differ."""
    calls, _ = tracker()
    first = leg("p-a1", "alerting")
    calls.feed(conversation(customer(), first))
    first_missed = leg("p-a1", "disconnected", ended=5, disconnect_type="timeout")
    second = leg("p-a2", "alerting", start=20)
    events = calls.feed(conversation(customer(), first_missed, second))
    assert [(e.name, e.participant_id) for e in events] == [
        ("call.ended", "p-a1"),
        ("call.alerting", "p-a2"),
    ]
    second_up = leg("p-a2", "connected", start=20, connected=22)
    events = calls.feed(conversation(customer(), first_missed, second_up))
    assert [(e.name, e.participant_id) for e in events] == [("call.connected", "p-a2")]
    assert one(events, CallConnected).key != "conv-1:p-a1:call.connected"


def test_a_body_without_a_tracked_agent_leg_is_ignored() -> None:
    """A queue-only update (no agent leg yet) yields nothing and is no anomaly."""
    calls, _ = tracker()
    acd = leg("p-q", "connected", purpose="acd", user=None)
    assert calls.feed(conversation(customer(), acd)) == []
    assert (calls.stats.ignored, calls.stats.anomalies) == (1, 0)


def test_a_user_topic_body_without_that_users_leg_is_an_anomaly() -> None:
    """The user's own topic should always show the user's leg: counted, logged, no events."""
    calls, _ = tracker()
    body = _raw(conversation(customer()))
    assert calls.feed_event(TopicEvent(f"v2.users.{AGENT}.conversations.calls", body)) == []
    assert calls.stats.anomalies == 1


# ------------------------------------------------------------------------- the two topics


def test_the_all_media_topic_yields_the_same_events() -> None:
    """``v2.users.{id}.conversations`` (state in ``calls[]``) gives the same call story."""
    scenario = Scenario.inbound().play(Move.ANSWER, Move.HOLD, Move.UNHOLD, Move.CUSTOMER_HANGUP)
    scenario.play(Move.FINISH_WRAPUP, start=100)
    via_calls, _ = tracker()
    via_generic, _ = tracker()
    expected = feed_all(via_calls, scenario)
    got = feed_all(via_generic, scenario, generic=True)
    assert names(got) == names(expected)
    alerting = one(got, CallAlerting)
    assert (alerting.ani, alerting.dnis, alerting.queue_id, alerting.queue_name) == (
        ANI,
        DNIS,
        QUEUE,
        "Support",
    )
    # The all-media topic carries no startTime; everything else about the end agrees.
    assert one(got, CallEnded) == attrs.evolve(one(expected, CallEnded), started_at=None)
    assert one(got, CallWrapup).code == "Resolved"


def test_both_topics_delivering_every_update_still_yield_each_event_once() -> None:
    """A connector subscribed to both user topics gets each update twice, in two shapes."""
    scenario = Scenario.inbound().play(Move.ANSWER, Move.CUSTOMER_HANGUP, Move.FINISH_WRAPUP)
    calls, _ = tracker()
    events: list[CallEvent] = []
    for index in range(len(scenario.snapshots)):
        events += calls.feed_event(scenario.event(index))
        events += calls.feed_event(scenario.event(index, generic=True))
    assert tuple(names(events)) == ANSWERED


def test_a_non_call_conversation_on_the_all_media_topic_is_ignored() -> None:
    """A chat: participants without calls[]; no events, no anomaly."""
    calls, _ = tracker()
    body = {
        "id": "chat-1",
        "participants": [
            {"id": "p1", "purpose": "agent", "userId": AGENT, "calls": [], "chats": [{}]}
        ],
    }
    assert calls.feed_event(TopicEvent(f"v2.users.{AGENT}.conversations", body)) == []
    assert (calls.stats.ignored, calls.stats.anomalies) == (1, 0)


@pytest.mark.parametrize(
    ("topic", "body"),
    [
        (f"v2.users.{AGENT}.conversations.calls", None),
        (f"v2.users.{AGENT}.conversations.calls", ["not", "an", "object"]),
        (f"v2.users.{AGENT}.conversations.calls", {"participants": []}),
        (f"v2.users.{AGENT}.conversations.calls", {"id": "c", "participants": [{"id": "p"}]}),
        (
            f"v2.users.{AGENT}.conversations.calls",
            {
                "id": "c",
                "participants": [
                    {"id": "p", "purpose": "agent", "state": "alerting", "startTime": "yesterday"}
                ],
            },
        ),
        (f"v2.users.{AGENT}.conversations", "text"),
        (f"v2.users.{AGENT}.conversations", {"id": "c"}),
        (f"v2.users.{AGENT}.conversations", {"id": "c", "participants": [3]}),
        (f"v2.users.{AGENT}.conversations", {"id": "c", "participants": [{"calls": {}}]}),
        (f"v2.users.{AGENT}.conversations", {"id": "c", "participants": [{"calls": [1]}]}),
        (
            f"v2.users.{AGENT}.conversations",
            {"participants": [{"id": "p", "purpose": "agent", "calls": [{"state": "alerting"}]}]},
        ),
    ],
)
def test_unreadable_bodies_are_counted_anomalies_never_exceptions(topic: str, body: Any) -> None:
    """Whatever the platform sends, the tracker counts and logs it, and emits nothing."""
    calls, _ = tracker()
    assert calls.feed_event(TopicEvent(topic, body)) == []
    assert calls.stats.anomalies == 1
    assert calls.stats.last_anomaly is not None


def test_anomalies_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    """An unreadable update leaves a warning naming the topic."""
    calls, _ = tracker()
    with caplog.at_level(logging.WARNING, logger="crmphone.calls"):
        calls.feed_event(TopicEvent(f"v2.users.{AGENT}.conversations.calls", {"id": 1}))
    assert f"v2.users.{AGENT}.conversations.calls" in caplog.text


@pytest.mark.parametrize(
    "topic",
    [
        f"v2.users.{AGENT}.presence",
        f"v2.routing.queues.{QUEUE}.conversations.calls",
        f"v2.users.{OTHER_AGENT}.conversations.calls",
        "channel.metadata",
    ],
)
def test_other_topics_and_untracked_agents_are_ignored(topic: str) -> None:
    """Not this tracker's business: ignored, not an anomaly."""
    scenario = Scenario.inbound()
    calls, _ = tracker()
    assert calls.feed_event(TopicEvent(topic, scenario.snapshots[0].calls_body)) == []
    assert (calls.stats.ignored, calls.stats.anomalies) == (1, 0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "participants",
                    "calls",
                    "state",
                    "purpose",
                    "user",
                    "userId",
                    "held",
                    "connectedTime",
                    "endTime",
                    "wrapup",
                    "code",
                    "direction",
                    "disconnectType",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@given(body=json_values, generic=st.booleans())
def test_no_body_whatsoever_raises(body: Any, generic: bool) -> None:
    """Fuzzed JSON on both topics: the tracker never raises."""
    calls = CallTracker(None, ManualClock())
    topic = f"v2.users.{AGENT}.conversations" + ("" if generic else ".calls")
    calls.feed_event(TopicEvent(topic, body))
    assert calls.stats.updates + calls.stats.anomalies + calls.stats.ignored >= 1


def test_unknown_leg_states_are_read_from_timestamps() -> None:
    """``parked`` with a connectedTime counts as talking; with an endTime as ended."""
    calls, _ = tracker()
    events = calls.feed(conversation(customer(), leg("p-a", "parked", connected=2)))
    assert names(events) == ["call.alerting", "call.connected"]
    events = calls.feed(conversation(customer(), leg("p-a", "converting", connected=2, ended=7)))
    assert names(events) == ["call.ended"]
    assert calls.stats.unknown_states == 2


def test_states_are_read_whatever_their_case() -> None:
    """``ALERTING`` is ``alerting``: no unknown state, the same events."""
    calls, _ = tracker()
    assert names(calls.feed(conversation(customer(), leg("p-a", "ALERTING")))) == ["call.alerting"]
    ended = leg("p-a", "Disconnected", ended=4, disconnect_type="timeout")
    assert names(calls.feed(conversation(customer(), ended))) == ["call.ended"]
    assert calls.stats.unknown_states == 0


def test_participant_data_and_the_customer_name_travel_with_the_alerting() -> None:
    """Call attributes (customer's, overridden by the agent leg's) are sorted pairs."""
    calls, _ = tracker()
    body = conversation(
        customer(attributes={"recordId": "001", "lang": "en"}, name="Grace Hopper"),
        leg("p-a", "alerting", attributes={"lang": "fr"}),
    )
    alerting = one(calls.feed(body), CallAlerting)
    assert alerting.attributes == (("lang", "fr"), ("recordId", "001"))
    assert alerting.caller_name == "Grace Hopper"


# ------------------------------------------------------------------------- memory


def test_ended_calls_are_remembered_for_the_retention_then_forgotten() -> None:
    """Late duplicates within the retention emit nothing; afterwards the leg is gone."""
    scenario = Scenario.inbound().play(Move.ANSWER, Move.CUSTOMER_HANGUP, Move.FINISH_WRAPUP)
    calls, clock = tracker(retention=60.0)
    feed_all(calls, scenario)
    assert len(calls) == 1
    clock.advance(59)
    assert feed_all(calls, scenario) == []
    assert len(calls) == 1
    clock.advance(1)
    assert calls.live_conversation_ids() == set()
    assert len(calls) == 0
    assert calls.stats.expired == 1


def test_a_late_wrapup_within_the_retention_still_comes_through() -> None:
    """The retention runs from the end; a wrap-up before it expires is emitted once."""
    scenario = Scenario.inbound().play(Move.ANSWER, Move.CUSTOMER_HANGUP, Move.FINISH_WRAPUP)
    calls, clock = tracker(retention=60.0)
    for index in range(len(scenario.snapshots) - 1):
        calls.feed_event(scenario.event(index))
    clock.advance(50)
    assert names(calls.feed_event(scenario.event())) == ["call.wrapup"]
    clock.advance(50)  # the wrap-up restarted the retention
    assert calls.feed_event(scenario.event()) == []


def test_at_most_max_ended_legs_are_kept() -> None:
    """The oldest ended legs go first once more than ``max_ended`` have ended."""
    calls, _ = tracker(max_ended=3)
    for number in range(10):
        scenario = Scenario.inbound(prefix=f"call{number}").play(Move.ALERT_TIMEOUT)
        feed_all(calls, scenario)
        assert len(calls) <= 4  # the bound is enforced before each update
    assert len(calls) == 3


def test_live_calls_are_never_expired() -> None:
    """A call still ringing stays however long it takes (the resync is what ends it)."""
    scenario = Scenario.inbound()
    calls, clock = tracker(retention=1.0, max_ended=1)
    feed_all(calls, scenario)
    clock.advance(10_000)
    assert calls.live_conversation_ids() == {scenario.id}


@pytest.mark.parametrize("options", [{"retention": 0}, {"retention": -1.0}, {"max_ended": 0}])
def test_bad_limits_are_refused(options: dict[str, Any]) -> None:
    """Retention must be positive and at least one ended leg kept."""
    with pytest.raises(ValueError, match="must be"):
        CallTracker(None, ManualClock(), **options)


# ------------------------------------------------------------------------- the table


def test_every_event_kind_is_emitted_by_the_table_and_built_by_one_builder() -> None:
    """The table, the builders and the CallEvent union name the same seven classes."""
    in_table = {kind for _, kinds in TRANSITIONS.values() for kind in kinds}
    expected = {
        CallAlerting,
        CallConnected,
        CallHeld,
        CallResumed,
        CallTransferred,
        CallEnded,
        CallWrapup,
    }
    assert in_table == expected == set(_BUILDERS)
    assert set(CallEvent.__args__) == expected


def test_every_state_is_reachable_and_every_step_used() -> None:
    """From NEW, the table reaches every state; each step appears; WRAPPED_UP is final."""
    reached = {CallState.NEW}
    frontier = [CallState.NEW]
    while frontier:
        state = frontier.pop()
        for (source, _), (target, _) in TRANSITIONS.items():
            if source is state and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(CallState)
    assert {step for _, step in TRANSITIONS} == set(Step)
    assert not [key for key in TRANSITIONS if key[0] is CallState.WRAPPED_UP]
    for state in (CallState.ALERTING, CallState.CONNECTED, CallState.HELD):
        assert (state, Step.END) in TRANSITIONS
    for (source, _), (target, _) in TRANSITIONS.items():
        assert _RANK[target] >= _RANK[source]  # the table never goes backwards


def _observations() -> list[_Observation]:
    result = []
    for rank, answered, held, transfer in itertools.product(
        (1, 2, 3, 4), (False, True), (False, True), (False, True)
    ):
        if (rank == 2 and not answered) or (rank == 1 and answered):
            continue  # talking means answered, and answered means at least talking
        result.append(_Observation(rank=rank, answered=answered, held=held, transfer=transfer))
    return result


@pytest.mark.parametrize("state", list(CallState))
def test_plan_walks_only_the_table_and_lands_where_the_update_says(state: CallState) -> None:
    """Every state and observation: legal steps only, ending at the observed progress."""
    for observation in _observations():
        if observation.rank < _RANK[state]:
            continue  # stale: the tracker drops it before planning
        current = state
        for step in _plan(state, observation):
            assert (current, step) in TRANSITIONS, (state, observation, step)
            current = TRANSITIONS[(current, step)][0]
        assert _RANK[current] == max(_RANK[state], observation.rank), (state, observation)
        if _RANK[current] == 2:
            assert (current is CallState.HELD) == observation.held


def test_an_illegal_step_raises_a_local_error() -> None:
    """A step outside the table is a bug in the tracker: InvalidStateError, not silence."""
    calls, _ = tracker()
    scenario = Scenario.inbound()
    feed_all(calls, scenario)
    (leg_state,) = calls._legs[scenario.id].values()
    with pytest.raises(InvalidStateError, match="cannot wrapup while alerting"):
        calls._step(leg_state, Step.WRAPUP, None)


# ------------------------------------------------------------------------- helpers


def _raw(value: Any) -> dict[str, Any]:
    """A parsed conversation back to a calls-topic body (for TopicEvent tests)."""
    participants = []
    for p in value.participants:
        body: dict[str, Any] = {
            "id": p.id,
            "purpose": p.purpose,
            "state": p.state,
            "direction": p.direction,
            "held": p.held,
            "wrapupRequired": p.wrapup_required,
            "attributes": dict(p.attributes),
        }
        if p.user_id:
            body["user"] = {"id": p.user_id}
        if p.queue_id:
            body["queue"] = {"id": p.queue_id}
        for key, moment in (
            ("startTime", p.start_time),
            ("connectedTime", p.connected_time),
            ("endTime", p.end_time),
        ):
            if moment is not None:
                body[key] = moment.isoformat()
        if p.disconnect_type:
            body["disconnectType"] = p.disconnect_type
        for key, text in (
            ("ani", p.ani),
            ("dnis", p.dnis),
            ("address", p.address),
            ("name", p.name),
        ):
            if text is not None:
                body[key] = text
        participants.append(body)
    return {"id": value.id, "participants": participants}
