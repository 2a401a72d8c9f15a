"""from_genesys constructors: platform JSON in, frozen values out, clear errors for bad payloads."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmphone.errors import PlatformError
from crmphone.platform import (
    CallConversation,
    Channel,
    Participant,
    Station,
    TopicSubscription,
    User,
    Wrapup,
    parse_genesys_datetime,
)

AGENT = {
    "id": "p-agent",
    "name": "Ada Agent",
    "address": "sip:ada@example",
    "startTime": "2026-03-01T09:00:00.123Z",
    "connectedTime": "2026-03-01T09:00:05.000Z",
    "purpose": "agent",
    "state": "connected",
    "initialState": "alerting",
    "direction": "inbound",
    "held": False,
    "muted": True,
    "recording": False,
    "wrapupRequired": True,
    "user": {"id": "u-1", "selfUri": "/api/v2/users/u-1"},
    "queue": {"id": "q-1", "selfUri": "/api/v2/routing/queues/q-1"},
    "alertingTimeoutMs": 8000,
    "attributes": {"crm": "sf", "accountId": "001"},
    "wrapup": {"code": "w-1", "notes": "called back", "durationSeconds": 12, "tags": []},
    "provider": "Edge",
    "someFutureField": {"nested": [1, 2]},
}
CUSTOMER = {
    "id": "p-customer",
    "purpose": "customer",
    "state": "connected",
    "ani": "tel:+15551230001",
    "dnis": "tel:+15559870000",
    "endTime": "2026-03-01T09:10:00Z",
    "disconnectType": "peer",
}
REST_BODY = {
    "id": "c-1",
    "participants": [CUSTOMER, AGENT],
    "recordingState": "none",
    "maxParticipants": 10,
    "selfUri": "/api/v2/conversations/calls/c-1",
}


def test_call_conversation_from_rest_body() -> None:
    """A REST call conversation becomes values with every documented field read."""
    call = CallConversation.from_genesys(REST_BODY)
    assert call.id == "c-1"
    assert [p.id for p in call.participants] == ["p-customer", "p-agent"]
    agent = call.participant("p-agent")
    assert agent == Participant(
        id="p-agent",
        purpose="agent",
        state="connected",
        initial_state="alerting",
        direction="inbound",
        address="sip:ada@example",
        name="Ada Agent",
        user_id="u-1",
        queue_id="q-1",
        start_time=datetime(2026, 3, 1, 9, 0, 0, 123000, tzinfo=UTC),
        connected_time=datetime(2026, 3, 1, 9, 0, 5, tzinfo=UTC),
        muted=True,
        wrapup_required=True,
        wrapup=Wrapup(code="w-1", notes="called back", duration_seconds=12),
        alerting_timeout_ms=8000,
        attributes=(("accountId", "001"), ("crm", "sf")),
    )
    assert agent.attribute("crm") == "sf"
    assert agent.attribute("missing") is None
    customer = call.participant("p-customer")
    assert customer is not None
    assert customer.ani == "tel:+15551230001"
    assert customer.end_time == datetime(2026, 3, 1, 9, 10, tzinfo=UTC)
    assert customer.disconnect_type == "peer"
    assert (customer.held, customer.muted, customer.recording) == (False, False, False)
    assert customer.wrapup is None
    assert call.participant("nobody") is None


def test_call_conversation_from_notification_event_body() -> None:
    """The conversations.calls eventBody (user refs without selfUri, extra keys) parses alike."""
    event_body = {
        "id": "c-1",
        "maxParticipants": 10,
        "participants": [
            {**CUSTOMER, "endTime": None},
            {**AGENT, "user": {"id": "u-1"}, "queue": {"id": "q-1"}, "state": "alerting"},
        ],
        "recordingState": "none",
    }
    call = CallConversation.from_genesys(event_body)
    assert call.participants[1].state == "alerting"
    assert call.participants[1].user_id == "u-1"
    assert call.participants[0].end_time is None


def test_values_are_frozen_and_hashable() -> None:
    """Parsed values cannot be changed and can be used as keys (for de-duplication)."""
    call = CallConversation.from_genesys(REST_BODY)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        call.id = "other"  # type: ignore[misc]
    assert hash(call) == hash(CallConversation.from_genesys(copy.deepcopy(REST_BODY)))


def test_conversation_without_participants_is_empty() -> None:
    """A conversation body without participants has none (not an error)."""
    assert CallConversation.from_genesys({"id": "c-2"}).participants == ()


def _with(path: list[Any], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(REST_BODY)
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (["id"], _DELETE, "'id' is missing"),
        (["id"], 5, "'id' must be a non-empty string, got int"),
        (["id"], "", "'id' must be a non-empty string"),
        (["participants"], {"a": 1}, "'participants' must be a JSON array, got dict"),
        (["participants", 0], "p", "'participants[0]' must be a JSON object, got str"),
        (["participants", 1, "state"], _DELETE, "'participants[1].state' is missing"),
        (["participants", 1, "purpose"], 3, "'participants[1].purpose' must be a non-empty"),
        (["participants", 1, "held"], "yes", "'participants[1].held' must be true or false"),
        (["participants", 1, "alertingTimeoutMs"], True, "alertingTimeoutMs' must be an integer"),
        (["participants", 1, "alertingTimeoutMs"], 1.5, "alertingTimeoutMs' must be an integer"),
        (["participants", 1, "startTime"], "yesterday", "'participants[1].startTime' is not an"),
        (["participants", 1, "startTime"], 1700000000, "startTime' must be an ISO-8601"),
        (["participants", 1, "endTime"], "0001-01-01T00:00:00+01:00", "endTime' is not an"),
        (["participants", 1, "user"], "u-1", "'participants[1].user' must be a JSON object"),
        (["participants", 1, "user", "id"], 7, "'participants[1].user.id' must be a string"),
        (["participants", 1, "attributes", "n"], 1, "'participants[1].attributes.n' must be a"),
        (["participants", 1, "wrapup", "durationSeconds"], "12", "wrapup.durationSeconds' must"),
    ],
)
def test_malformed_call_conversation_names_the_field(
    path: list[Any], value: Any, field: str
) -> None:
    """A malformed conversation raises PlatformError naming the field, never KeyError/TypeError."""
    with pytest.raises(PlatformError, match="malformed call conversation") as info:
        CallConversation.from_genesys(_with(path, value))
    assert field in str(info.value)


@pytest.mark.parametrize("payload", [None, [], "text", 3])
def test_non_object_payloads_are_platform_errors(payload: object) -> None:
    """Payloads that are not JSON objects are refused clearly by every constructor."""
    for build in (
        Channel.from_genesys,
        TopicSubscription.from_genesys,
        User.from_genesys,
        Station.from_genesys,
        CallConversation.from_genesys,
        Participant.from_genesys,
    ):
        with pytest.raises(PlatformError, match="must be a JSON object"):
            build(payload)


def test_channel_from_genesys() -> None:
    """A channel body gives id, connect URI and an aware UTC expiry."""
    channel = Channel.from_genesys(
        {
            "connectUri": "wss://streaming.mypurecloud.com/channels/ch-1",
            "id": "ch-1",
            "expires": "2026-03-02T09:00:00.000Z",
        }
    )
    assert channel == Channel(
        id="ch-1",
        connect_uri="wss://streaming.mypurecloud.com/channels/ch-1",
        expires=datetime(2026, 3, 2, 9, tzinfo=UTC),
    )


def test_channel_without_expires_and_with_ws_uri() -> None:
    """The sandbox's ws:// URI is accepted; a missing expiry is None."""
    channel = Channel.from_genesys({"connectUri": "ws://127.0.0.1:5000/channels/x", "id": "x"})
    assert channel.expires is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "x"}, "'connectUri' is missing"),
        ({"id": "x", "connectUri": "https://not-a-socket"}, "ws:// or wss://"),
        ({"connectUri": "wss://h/channels/x"}, "'id' is missing"),
        ({"id": "x", "connectUri": "wss://h/x", "expires": "tomorrow"}, "'expires'"),
    ],
)
def test_malformed_channel(body: dict[str, Any], field: str) -> None:
    """A channel body without a usable id, socket URI or expiry is refused naming the field."""
    with pytest.raises(PlatformError, match="malformed channel") as info:
        Channel.from_genesys(body)
    assert field in str(info.value)


def test_topic_subscription_permitted_and_rejected() -> None:
    """ignoreErrors entities carry state, reason and missing permissions."""
    permitted = TopicSubscription.from_genesys(
        {"id": "v2.users.u-1.presence", "state": "Permitted", "selfUri": "/x"}
    )
    rejected = TopicSubscription.from_genesys(
        {
            "id": "v2.routing.queues.q-1.conversations.calls",
            "state": "Rejected",
            "rejectionReason": "Missing permissions",
            "missingPermissions": ["routing:queue:view"],
        }
    )
    plain = TopicSubscription.from_genesys({"id": "v2.users.u-1.presence"})
    assert (permitted.rejected, rejected.rejected, plain.rejected) == (False, True, False)
    assert rejected.rejection_reason == "Missing permissions"
    assert rejected.missing_permissions == ("routing:queue:view",)
    assert plain.state is None


def test_topic_subscription_with_bad_permissions_list() -> None:
    """missingPermissions must be a list of strings."""
    with pytest.raises(PlatformError, match=r"'missingPermissions\[1\]' must be a string"):
        TopicSubscription.from_genesys({"id": "t", "missingPermissions": ["a", 2]})


def test_user_with_expanded_station() -> None:
    """users/me?expand=station gives the effective station's id."""
    user = User.from_genesys(
        {
            "id": "u-1",
            "name": "Ada",
            "email": "ada@example.com",
            "state": "active",
            "station": {
                "associatedStation": {"id": "st-assoc"},
                "effectiveStation": {"id": "st-eff", "type": "inin_webrtc_softphone"},
            },
            "version": 3,
        }
    )
    assert user == User(
        id="u-1", name="Ada", email="ada@example.com", state="active", station_id="st-eff"
    )


def test_user_station_falls_back_and_may_be_absent() -> None:
    """Without an effective station the associated one is used; without either, None."""
    fallback = User.from_genesys({"id": "u", "station": {"associatedStation": {"id": "st-a"}}})
    assert fallback.station_id == "st-a"
    assert User.from_genesys({"id": "u", "station": {}}).station_id is None
    assert User.from_genesys({"id": "u"}).station_id is None


def test_station_from_genesys() -> None:
    """A station gives its type and the persistent-connection flag (absent means off)."""
    station = Station.from_genesys(
        {
            "id": "st-1",
            "name": "Ada's WebRTC phone",
            "type": "inin_webrtc_softphone",
            "webRtcPersistentEnabled": True,
            "status": "ASSOCIATED",
        }
    )
    assert station == Station(
        id="st-1",
        name="Ada's WebRTC phone",
        type="inin_webrtc_softphone",
        web_rtc_persistent_enabled=True,
    )
    assert Station.from_genesys({"id": "st-2"}).web_rtc_persistent_enabled is False
    with pytest.raises(PlatformError, match="'webRtcPersistentEnabled' must be true or false"):
        Station.from_genesys({"id": "st-3", "webRtcPersistentEnabled": "true"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01T09:00:00.123Z", datetime(2026, 3, 1, 9, 0, 0, 123000, tzinfo=UTC)),
        ("2026-03-01T09:00:00Z", datetime(2026, 3, 1, 9, tzinfo=UTC)),
        ("2026-03-01T10:00:00+01:00", datetime(2026, 3, 1, 9, tzinfo=UTC)),
        ("2026-03-01T09:00:00", datetime(2026, 3, 1, 9, tzinfo=UTC)),
    ],
)
def test_parse_genesys_datetime(text: str, expected: datetime) -> None:
    """Genesys timestamps become aware UTC datetimes, whatever offset they carry."""
    parsed = parse_genesys_datetime(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.just(UTC),
    )
)
def test_genesys_timestamps_round_trip_to_the_millisecond(moment: datetime) -> None:
    """Any instant written the way Genesys writes it (ms precision, Z) reads back unchanged."""
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    assert parse_genesys_datetime(text) == moment


_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)
)
_json = st.recursive(
    _json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.text(max_size=5), children, max_size=3),
    ),
    max_leaves=10,
)
_participant_keys = st.sampled_from(
    [
        "id", "purpose", "state", "user", "queue", "held", "startTime", "wrapup",
        "attributes", "alertingTimeoutMs", "ani",
    ]
)  # fmt: skip


@given(
    st.fixed_dictionaries(
        {"id": st.one_of(st.just("c"), _json)},
        optional={
            "participants": st.one_of(
                _json, st.lists(st.dictionaries(_participant_keys, _json, max_size=6), max_size=3)
            )
        },
    )
)
def test_arbitrary_json_gives_a_conversation_or_a_platform_error(body: dict[str, Any]) -> None:
    """No JSON shape makes CallConversation.from_genesys raise anything but PlatformError."""
    try:
        call = CallConversation.from_genesys(body)
    except PlatformError:
        return
    assert isinstance(call.participants, tuple)
    for participant in call.participants:
        for moment in (participant.start_time, participant.connected_time, participant.end_time):
            assert moment is None or moment.utcoffset() == timedelta(0)
