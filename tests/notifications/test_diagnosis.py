"""Close diagnosis: facts about a closed socket in, the likely cause and an explanation out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmphone.notifications.diagnosis import (
    CHANNEL_LIFETIME,
    CloseAges,
    ClosedBy,
    CloseFacts,
    LikelyCause,
    SystemMessage,
    _duration,
    diagnose,
)
from crmphone.notifications.messages import NoLongerSubscribed, TokenRevoked

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
AT = T0 + timedelta(hours=3)
REVOKED = SystemMessage("v2.system.token_revoked.ch-1")
STOLEN = SystemMessage("v2.system.no_longer_subscribed.ch-1", "another_channel_subscribed")


def facts(**overrides: Any) -> CloseFacts:
    """A server close three hours into a healthy channel, unless overridden."""
    values: dict[str, Any] = {
        "channel_id": "ch-1",
        "close_code": 1000,
        "close_reason": None,
        "closed_by": "server",
        "at": AT,
        "last_frame_at": AT - timedelta(seconds=2),
        "last_heartbeat_at": AT - timedelta(seconds=10),
        "socket_opened_at": T0,
        "channel_created_at": T0,
        "channel_expires": T0 + timedelta(hours=24),
        "token_issued_at": T0 - timedelta(minutes=1),
        "token_expires_at": T0 + timedelta(hours=30),
        "channel_exists_after": True,
    }
    values.update(overrides)
    return CloseFacts(**values)


CASES: list[tuple[str, dict[str, Any], LikelyCause]] = [
    ("plain server close", {}, LikelyCause.UNKNOWN),
    ("token revoked notice", {"system_message": REVOKED}, LikelyCause.TOKEN_REVOKED),
    ("topics taken", {"system_message": STOLEN}, LikelyCause.NO_LONGER_SUBSCRIBED),
    (
        "maintenance notice",
        {"socket_closing_at": AT - timedelta(seconds=58)},
        LikelyCause.MAINTENANCE,
    ),
    (
        "we closed it",
        {"closed_by": "client", "close_reason": "rollover"},
        LikelyCause.CLIENT_CLOSED,
    ),
    (
        "our watchdog closed it",
        {"closed_by": "client", "liveness_failed": True},
        LikelyCause.NETWORK_SILENCE,
    ),
    ("1011", {"close_code": 1011}, LikelyCause.SERVER_ERROR),
    ("1012", {"close_code": 1012}, LikelyCause.SERVER_ERROR),
    ("1013", {"close_code": 1013}, LikelyCause.SERVER_ERROR),
    ("1014", {"close_code": 1014}, LikelyCause.SERVER_ERROR),
    ("5xx on reconnect", {"reconnect_http_status": 503}, LikelyCause.SERVER_ERROR),
    ("429 on reconnect", {"reconnect_http_status": 429}, LikelyCause.UNKNOWN),
    ("displaced", {"close_reason": "Displaced by a newer connection"}, LikelyCause.DISPLACED),
    (
        "we said displaced",
        {"closed_by": "client", "close_reason": "displaced"},
        LikelyCause.CLIENT_CLOSED,
    ),
    ("channel expiry", {"at": T0 + timedelta(hours=24)}, LikelyCause.CHANNEL_EXPIRED),
    (
        "expiry within skew",
        {"at": T0 + timedelta(hours=24, seconds=-4)},
        LikelyCause.CHANNEL_EXPIRED,
    ),
    ("before expiry and skew", {"at": T0 + timedelta(hours=24, seconds=-6)}, LikelyCause.UNKNOWN),
    (
        "wider skew",
        {"at": T0 + timedelta(hours=24, seconds=-6), "clock_skew_allowance": timedelta(seconds=10)},
        LikelyCause.CHANNEL_EXPIRED,
    ),
    (
        "expiry inferred from creation",
        {"channel_expires": None, "at": T0 + timedelta(hours=24)},
        LikelyCause.CHANNEL_EXPIRED,
    ),
    (
        "no lifetime known",
        {
            "channel_expires": None,
            "channel_created_at": None,
            "at": T0 + timedelta(days=3),
            "token_expires_at": None,
        },
        LikelyCause.UNKNOWN,
    ),
    ("token expiry", {"token_expires_at": AT - timedelta(seconds=1)}, LikelyCause.TOKEN_EXPIRED),
    (
        "token ran out first",
        {"at": T0 + timedelta(hours=25), "token_expires_at": T0 + timedelta(hours=23)},
        LikelyCause.TOKEN_EXPIRED,
    ),
    (
        "channel ran out first",
        {"at": T0 + timedelta(hours=25), "token_expires_at": T0 + timedelta(hours=24, minutes=30)},
        LikelyCause.CHANNEL_EXPIRED,
    ),
    ("channel gone", {"channel_exists_after": False}, LikelyCause.EVICTED),
    (
        "channel gone because expired",
        {"channel_exists_after": False, "at": T0 + timedelta(hours=24)},
        LikelyCause.CHANNEL_EXPIRED,
    ),
    (
        "channel gone because the token expired",
        {"channel_exists_after": False, "token_expires_at": AT},
        LikelyCause.TOKEN_EXPIRED,
    ),
    ("no close frame", {"closed_by": "network", "close_code": None}, LikelyCause.NETWORK_SILENCE),
    ("ping unanswered", {"liveness_failed": True}, LikelyCause.NETWORK_SILENCE),
    ("1001", {"close_code": 1001, "close_reason": "idle timeout"}, LikelyCause.IDLE_TIMEOUT),
    ("1001 evicted", {"close_code": 1001, "channel_exists_after": False}, LikelyCause.EVICTED),
    (
        "1001 at expiry",
        {"close_code": 1001, "at": T0 + timedelta(hours=24)},
        LikelyCause.CHANNEL_EXPIRED,
    ),
    (
        "revoked beats maintenance",
        {"system_message": REVOKED, "socket_closing_at": AT},
        LikelyCause.TOKEN_REVOKED,
    ),
    (
        "maintenance beats our own close",
        {"socket_closing_at": AT - timedelta(seconds=5), "closed_by": "client"},
        LikelyCause.MAINTENANCE,
    ),
    (
        "maintenance beats silence",
        {"socket_closing_at": AT - timedelta(seconds=50), "liveness_failed": True},
        LikelyCause.MAINTENANCE,
    ),
    (
        "our close beats expiry",
        {"closed_by": "client", "at": T0 + timedelta(hours=24)},
        LikelyCause.CLIENT_CLOSED,
    ),
    (
        "server error beats expiry",
        {"close_code": 1011, "at": T0 + timedelta(hours=24)},
        LikelyCause.SERVER_ERROR,
    ),
    (
        "expiry beats silence",
        {"liveness_failed": True, "at": T0 + timedelta(hours=24)},
        LikelyCause.CHANNEL_EXPIRED,
    ),
    (
        "eviction beats silence",
        {"liveness_failed": True, "channel_exists_after": False},
        LikelyCause.EVICTED,
    ),
]


@pytest.mark.parametrize(("overrides", "cause"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule_table(overrides: dict[str, Any], cause: LikelyCause) -> None:
    """Each situation is diagnosed by the first matching rule of the documented table."""
    assert diagnose(facts(**overrides)).cause is cause


def test_every_cause_is_reachable() -> None:
    """The table reaches every cause (so none is dead vocabulary)."""
    assert {cause for _, _, cause in CASES} == set(LikelyCause)


@pytest.mark.parametrize("cause", list(LikelyCause))
def test_every_cause_explains_itself(cause: LikelyCause) -> None:
    """Each cause has a one-line summary and says what crmphone does about it."""
    assert cause.summary.endswith(".")
    assert "\n" not in cause.summary
    assert cause.remedy
    assert not cause.remedy.endswith(".")


@pytest.mark.parametrize(("overrides", "cause"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_explanation_is_one_sentence_ending_with_the_remedy(
    overrides: dict[str, Any], cause: LikelyCause
) -> None:
    """Every explanation is one line that ends with what crmphone does."""
    diagnosis = diagnose(facts(**overrides))
    assert "\n" not in diagnosis.explanation
    assert diagnosis.explanation.endswith(f"; {cause.remedy}.")


def test_channel_expiry_explanation_carries_the_numbers() -> None:
    """The expiry explanation names the expiry time and the lifetime."""
    diagnosis = diagnose(facts(at=T0 + timedelta(hours=24)))
    assert diagnosis.explanation == (
        "The channel reached its expiry at 2026-03-02 08:00:00 UTC (24 h after creation); "
        "crmphone opens a new channel and resubscribes before the old one expires."
    )


def test_token_expiry_explanation_carries_the_numbers() -> None:
    """The token explanation names its expiry and lifetime."""
    diagnosis = diagnose(facts(token_expires_at=AT, token_issued_at=AT - timedelta(hours=1)))
    assert diagnosis.explanation.startswith(
        "The access token expired at 2026-03-01 11:00:00 UTC (1 h after it was issued)"
    )


def test_silence_explanation_carries_the_numbers() -> None:
    """The silence explanation states how long nothing came and when the last heartbeat was."""
    diagnosis = diagnose(
        facts(
            liveness_failed=True,
            closed_by="client",
            last_frame_at=AT - timedelta(seconds=40),
            last_heartbeat_at=AT - timedelta(seconds=70),
        )
    )
    assert diagnosis.explanation.startswith(
        "No frame for 40.0 s (last heartbeat: 1 min 10 s) and our ping went unanswered"
    )


def test_silence_on_a_socket_that_never_spoke() -> None:
    """Without any frame the explanation says so instead of inventing an age."""
    diagnosis = diagnose(facts(closed_by="network", last_frame_at=None, last_heartbeat_at=None))
    assert diagnosis.explanation.startswith(
        "No frame for ever since it opened (last heartbeat: never) and the connection ended "
        "without a close frame"
    )


def test_maintenance_explanation_states_the_notice() -> None:
    """The maintenance explanation gives the notice time and how long before the close it came."""
    diagnosis = diagnose(facts(socket_closing_at=AT - timedelta(seconds=58)))
    assert diagnosis.explanation.startswith(
        "The platform announced maintenance (v2.system.socket_closing) at 2026-03-01 10:59:02 UTC, "
        "58.0 s before the socket closed"
    )


def test_no_longer_subscribed_explanation_carries_the_reason() -> None:
    """The explanation quotes the platform's reason, and an expired token when there was one."""
    diagnosis = diagnose(facts(system_message=STOLEN, token_expires_at=AT - timedelta(minutes=2)))
    assert "reason: another_channel_subscribed" in diagnosis.explanation
    assert "the token had expired 2 min earlier" in diagnosis.explanation


def test_evicted_explanation_states_the_remaining_lifetimes() -> None:
    """The eviction explanation shows that neither lifetime had run out."""
    diagnosis = diagnose(facts(channel_exists_after=False))
    assert diagnosis.explanation.startswith(
        "Channel ch-1 was gone after the close (HEAD: 404) with 21 h of its lifetime and 27 h of "
        "the token's left"
    )


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"system_message": REVOKED}, "The platform sent v2.system.token_revoked.ch-1"),
        (
            {"closed_by": "client", "close_reason": "rollover"},
            "crmphone closed the socket itself (rollover)",
        ),
        (
            {"close_code": 1012, "close_reason": "restart"},
            "1012 (service restart), reason 'restart'",
        ),
        ({"reconnect_http_status": 502}, "Reconnecting failed with HTTP 502"),
        ({"close_reason": "replaced"}, "another connection took over channel ch-1"),
        ({"close_code": 1001}, "The server closed the socket with 1001 after 3 h open"),
        (
            {"close_code": 4000, "close_reason": "odd"},
            "The server closed the socket with 4000, reason 'odd'",
        ),
    ],
)
def test_explanations_quote_the_facts(overrides: dict[str, Any], fragment: str) -> None:
    """Each explanation quotes the concrete code, reason or status that decided it."""
    assert fragment in diagnose(facts(**overrides)).explanation


def test_ages_are_measured_at_the_close() -> None:
    """Ages and remaining lifetimes are computed from the close time."""
    ages = diagnose(facts()).ages
    assert ages == CloseAges(
        socket_age=timedelta(hours=3),
        last_frame_age=timedelta(seconds=2),
        last_heartbeat_age=timedelta(seconds=10),
        token_age=timedelta(hours=3, minutes=1),
        token_remaining=timedelta(hours=27),
        channel_age=timedelta(hours=3),
        channel_remaining=timedelta(hours=21),
    )


def test_ages_of_unknown_facts_are_none() -> None:
    """Where a fact is missing, its age is None rather than a guess."""
    bare = CloseFacts(
        channel_id="c", close_code=None, close_reason=None, closed_by="network", at=AT
    )
    assert diagnose(bare).ages == CloseAges()
    assert diagnose(bare).cause is LikelyCause.NETWORK_SILENCE


def test_one_line_has_code_reason_cause_heartbeat_and_token_age() -> None:
    """The log line carries what an operator looks for first."""
    line = diagnose(facts(close_code=1001, close_reason="idle timeout")).one_line()
    assert line == (
        "channel ch-1 closed by server: code=1001 reason='idle timeout' cause=idle_timeout "
        "last_heartbeat=10.0 s token_age=3 h 1 min"
    )


def test_one_line_with_unknowns() -> None:
    """Missing code, reason, heartbeat and token show as placeholders."""
    bare = CloseFacts(
        channel_id="c", close_code=None, close_reason=None, closed_by="network", at=AT
    )
    assert diagnose(bare).one_line() == (
        "channel c closed by network: code=- reason=- cause=network_silence "
        "last_heartbeat=never token_age=unknown"
    )


def test_to_dict_is_json_with_iso_times_and_seconds() -> None:
    """to_dict gives JSON-ready data: ISO datetimes, durations as float seconds."""
    data = diagnose(facts(system_message=STOLEN)).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["cause"] == "no_longer_subscribed"
    assert data["channel_id"] == "ch-1"
    facts_data = data["facts"]
    assert isinstance(facts_data, dict)
    assert facts_data["at"] == "2026-03-01T11:00:00+00:00"
    assert facts_data["closed_by"] == "server"
    assert facts_data["system_message"] == {
        "topic": "v2.system.no_longer_subscribed.ch-1",
        "reason": "another_channel_subscribed",
    }
    assert facts_data["clock_skew_allowance"] == 5.0
    ages = data["ages"]
    assert isinstance(ages, dict)
    assert ages["last_heartbeat_age"] == 10.0
    assert ages["channel_remaining"] == 21 * 3600.0
    assert set(data) == {"channel_id", "cause", "summary", "explanation", "remedy", "facts", "ages"}


def test_render_is_a_readable_block() -> None:
    """render() gives a headed block with one labelled line per fact."""
    text = diagnose(
        facts(socket_closing_at=AT - timedelta(seconds=30), reconnect_http_status=503)
    ).render()
    lines = text.splitlines()
    assert lines[0] == "Channel ch-1 closed"
    assert all(line.startswith("  ") for line in lines[1:])
    assert "likely cause" in lines[1]
    assert "MAINTENANCE" in lines[1]
    for label in (
        "last heartbeat",
        "token",
        "channel after close",
        "maintenance notice",
        "reconnect answer",
    ):
        assert any(line.strip().startswith(label) for line in lines), label
    assert "10.0 s before the close" in text
    assert "age 3 h 1 min, 27 h left" in text


def test_render_shows_an_expired_lifetime_and_a_notice() -> None:
    """An expired lifetime reads as expired, and a system notice is listed with its reason."""
    text = diagnose(
        facts(system_message=STOLEN, token_expires_at=AT - timedelta(minutes=5))
    ).render()
    assert "expired 5 min before the close" in text
    assert "v2.system.no_longer_subscribed.ch-1 (reason: another_channel_subscribed)" in text


def test_closed_by_accepts_strings_and_rejects_others() -> None:
    """closed_by is converted to ClosedBy; an unknown value is refused."""
    assert facts(closed_by="client").closed_by is ClosedBy.CLIENT
    with pytest.raises(ValueError, match="nobody"):
        facts(closed_by="nobody")


def test_naive_datetimes_are_refused() -> None:
    """A datetime without a zone is refused: guessing its zone would skew every age."""
    with pytest.raises(ValueError, match="time zone"):
        facts(at=datetime(2026, 3, 1, 11, 0))
    with pytest.raises(ValueError, match="time zone"):
        facts(last_frame_at=datetime(2026, 3, 1, 11, 0))


def test_other_zones_are_converted_to_utc() -> None:
    """Aware datetimes in other zones become the same instant in UTC."""
    cet = timezone(timedelta(hours=1))
    converted = facts(at=datetime(2026, 3, 1, 12, 0, tzinfo=cet)).at
    assert converted == AT
    assert converted.tzinfo is UTC


def test_close_facts_cannot_hold_a_token() -> None:
    """CloseFacts has only lifetimes of the token, never a field for its value."""
    names = {field.name for field in attrs.fields(CloseFacts)}
    assert not names & {"token", "access_token", "token_value", "value", "authorization"}
    assert {name for name in names if "token" in name} == {"token_issued_at", "token_expires_at"}


def test_system_message_from_parsed_notices() -> None:
    """Parsed notices become SystemMessage values that the rules recognise."""
    nls = SystemMessage.from_message(
        NoLongerSubscribed("v2.system.no_longer_subscribed.x", "r", {})
    )
    revoked = SystemMessage.from_message(TokenRevoked("v2.system.token_revoked.x", {}))
    assert nls == SystemMessage("v2.system.no_longer_subscribed.x", "r")
    assert nls.is_no_longer_subscribed
    assert not nls.is_token_revoked
    assert revoked == SystemMessage("v2.system.token_revoked.x", None)
    assert revoked.is_token_revoked
    assert not revoked.is_no_longer_subscribed


def test_diagnose_is_pure() -> None:
    """The same facts always give the same diagnosis."""
    one = facts(close_code=1001)
    assert diagnose(one) == diagnose(one)


def test_channel_lifetime_is_a_day() -> None:
    """An unknown expiry is inferred from Genesys Cloud's 24 h channel lifetime."""
    assert timedelta(hours=24) == CHANNEL_LIFETIME
    assert facts(channel_expires=None).channel_deadline == T0 + CHANNEL_LIFETIME


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=0), "0.0 s"),
        (timedelta(seconds=59.94), "59.9 s"),
        (timedelta(seconds=60), "1 min"),
        (timedelta(seconds=125), "2 min 5 s"),
        (timedelta(hours=3, minutes=12, seconds=10), "3 h 12 min"),
        (timedelta(hours=24), "24 h"),
        (timedelta(days=3, hours=2), "3 d 2 h"),
        (timedelta(seconds=-3), "-3.0 s"),
    ],
)
def test_durations_read_naturally(delta: timedelta, text: str) -> None:
    """Durations use the largest sensible units."""
    assert _duration(delta) == text


moments = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
    ),
)


@given(
    close_code=st.one_of(st.none(), st.integers(min_value=1000, max_value=4999)),
    close_reason=st.one_of(st.none(), st.text(max_size=40)),
    closed_by=st.sampled_from(list(ClosedBy)),
    at=st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
    ),
    times=st.lists(moments, min_size=8, max_size=8),
    system_message=st.one_of(st.none(), st.just(REVOKED), st.just(STOLEN)),
    liveness_failed=st.booleans(),
    channel_exists_after=st.one_of(st.none(), st.booleans()),
    reconnect_http_status=st.one_of(st.none(), st.integers(min_value=100, max_value=599)),
)
def test_any_facts_get_a_diagnosis(
    close_code: int | None,
    close_reason: str | None,
    closed_by: ClosedBy,
    at: datetime,
    times: list[datetime | None],
    system_message: SystemMessage | None,
    liveness_failed: bool,
    channel_exists_after: bool | None,
    reconnect_http_status: int | None,
) -> None:
    """Whatever the facts, diagnosis succeeds and every rendering works."""
    close = CloseFacts(
        channel_id="c",
        close_code=close_code,
        close_reason=close_reason,
        closed_by=closed_by,
        at=at,
        last_frame_at=times[0],
        last_heartbeat_at=times[1],
        socket_opened_at=times[2],
        channel_created_at=times[3],
        channel_expires=times[4],
        token_issued_at=times[5],
        token_expires_at=times[6],
        socket_closing_at=times[7],
        system_message=system_message,
        liveness_failed=liveness_failed,
        channel_exists_after=channel_exists_after,
        reconnect_http_status=reconnect_http_status,
    )
    diagnosis = diagnose(close)
    assert "\n" not in diagnosis.explanation
    assert diagnosis.explanation.endswith(diagnosis.cause.remedy + ".")
    json.dumps(diagnosis.to_dict())
    assert diagnosis.render().startswith("Channel c closed")
    assert diagnosis.one_line().startswith("channel c closed by")
