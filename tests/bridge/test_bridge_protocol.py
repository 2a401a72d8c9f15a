"""The bridge's wire format without a socket: the command parser, events out, results."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmphone.adapters import CallerMatch, CrmRecord
from crmphone.bridge import (
    COMMANDS,
    MAX_FRAME_BYTES,
    PROTOCOL,
    Answer,
    CommandError,
    CommandRequest,
    Dial,
    ErrorCode,
    Hangup,
    Hold,
    Mute,
    StopPersistent,
    encode,
    error_message,
    event_message,
    parse_command,
    parse_hello,
    pop_message,
    result_message,
    welcome_message,
)
from crmphone.errors import (
    ConfigError,
    CrmRetryableError,
    InvalidStateError,
    PlatformError,
    UsageError,
)
from crmphone.events import (
    CallAlerting,
    CallConnected,
    CallDirection,
    CallEnded,
    CallHeld,
    CallResumed,
    CallTransferred,
    CallWrapup,
    ConnectionState,
    ConnectionStateChanged,
    DownReason,
    HungUpBy,
    MicrophoneLive,
    PersistentConnectionDown,
    PersistentConnectionUp,
    PresenceChanged,
    RoutingStatus,
    RoutingStatusChanged,
)

AT = datetime(2026, 1, 2, 9, 30, tzinfo=UTC)
AT_TEXT = "2026-01-02T09:30:00Z"


def frame(**fields: Any) -> str:
    """A command frame with ``fields`` (type and id filled in unless given)."""
    return json.dumps({"type": "command", "id": 1} | fields)


# ---------------------------------------------------------------------------------------------
# Valid commands


VALID = [
    (frame(command="answer", conversation_id="c-1"), CommandRequest(1, Answer("c-1"))),
    (
        frame(id="a.b:c-9", command="hangup", conversation_id="c1"),
        CommandRequest("a.b:c-9", Hangup("c1")),
    ),
    (frame(command="mute", conversation_id="c1", muted=True), CommandRequest(1, Mute("c1", True))),
    (frame(command="hold", conversation_id="c1", held=False), CommandRequest(1, Hold("c1", False))),
    (frame(command="dial", number="+1 (555) 123-0001"), CommandRequest(1, Dial("+15551230001"))),
    (frame(command="dial", number="555.0100"), CommandRequest(1, Dial("5550100"))),
    (
        frame(
            command="dial",
            number="0044 20 7946 0000",
            record={"kind": "Contact", "id": "003000000000001", "name": "<b>Ada</b>"},
            agent_id="agent-7",
        ),
        CommandRequest(
            1,
            Dial(
                "00442079460000",
                record=CrmRecord("Contact", "003000000000001", "<b>Ada</b>"),
                agent_id="agent-7",
            ),
        ),
    ),
    (
        frame(command="dial", number="123", record={"kind": "user", "id": "42", "name": None}),
        CommandRequest(1, Dial("123", record=CrmRecord("user", "42"))),
    ),
    (frame(command="stop_persistent"), CommandRequest(1, StopPersistent(force=False))),
    (frame(command="stop_persistent", force=True), CommandRequest(1, StopPersistent(force=True))),
    (frame(id=0, command="answer", conversation_id="x"), CommandRequest(0, Answer("x"))),
    (
        frame(id=-(2**53 - 1), command="answer", conversation_id="x"),
        CommandRequest(-(2**53 - 1), Answer("x")),
    ),
    (
        frame(id="i" * 128, command="answer", conversation_id="c" * 128),
        CommandRequest("i" * 128, Answer("c" * 128)),
    ),
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_valid_commands_parse_into_values(text: str, expected: CommandRequest) -> None:
    """Each valid frame becomes the expected frozen command, the number normalised."""
    assert parse_command(text) == expected


# ---------------------------------------------------------------------------------------------
# Bad input: (frame, code, id in the error, words the message must hold)


BAD: list[tuple[str, ErrorCode, object, tuple[str, ...]]] = [
    ("", ErrorCode.BAD_JSON, None, ("JSON",)),
    ("{", ErrorCode.BAD_JSON, None, ("JSON",)),
    ('{"type": "command", "id": 1, "id": 2}', ErrorCode.BAD_JSON, None, ("twice",)),
    ('{"type": "command", "id": NaN}', ErrorCode.BAD_JSON, None, ("NaN",)),
    ("[" * 50_000 + "]" * 50_000, ErrorCode.TOO_LARGE, None, ("65536",)),
    ("[" * 30_000 + "]" * 30_000, ErrorCode.BAD_JSON, None, ("nested",)),
    ("[1, 2]", ErrorCode.NOT_OBJECT, None, ("object", "array")),
    ('"answer"', ErrorCode.NOT_OBJECT, None, ("object",)),
    ("null", ErrorCode.NOT_OBJECT, None, ("object", "null")),
    (json.dumps({"id": 3, "command": "answer"}), ErrorCode.UNKNOWN_TYPE, 3, ("type",)),
    (json.dumps({"type": "hello", "id": 3}), ErrorCode.UNKNOWN_TYPE, 3, ("hello was already",)),
    (json.dumps({"type": "command", "command": "answer"}), ErrorCode.MISSING_FIELD, None, ("id",)),
    (
        frame(id=True, command="answer", conversation_id="c"),
        ErrorCode.BAD_FIELD,
        None,
        ("id", "boolean"),
    ),
    (
        frame(id=1.5, command="answer", conversation_id="c"),
        ErrorCode.BAD_FIELD,
        None,
        ("id", "integer"),
    ),
    (frame(id=2**53, command="answer", conversation_id="c"), ErrorCode.BAD_FIELD, None, ("id",)),
    (
        frame(id="x" * 129, command="answer", conversation_id="c"),
        ErrorCode.BAD_FIELD,
        None,
        ("id", "129"),
    ),
    (frame(id="", command="answer", conversation_id="c"), ErrorCode.BAD_FIELD, None, ("id",)),
    (frame(id="a b", command="answer", conversation_id="c"), ErrorCode.BAD_FIELD, None, ("id",)),
    (frame(id=[1], command="answer"), ErrorCode.BAD_FIELD, None, ("id", "array")),
    (frame(id=9), ErrorCode.MISSING_FIELD, 9, ("command", "answer, dial")),
    (frame(id=9, command="explode"), ErrorCode.UNKNOWN_COMMAND, 9, ("'explode'", "hangup")),
    (frame(id=9, command=7), ErrorCode.UNKNOWN_COMMAND, 9, ("number",)),
    (frame(id=9, command="answer"), ErrorCode.MISSING_FIELD, 9, ("conversation_id",)),
    (
        frame(id=9, command="answer", conversation_id=5),
        ErrorCode.BAD_FIELD,
        9,
        ("conversation_id", "number"),
    ),
    (
        frame(id=9, command="answer", conversation_id="c" * 129),
        ErrorCode.BAD_FIELD,
        9,
        ("conversation_id", "129"),
    ),
    (
        frame(id=9, command="answer", conversation_id="c/../d"),
        ErrorCode.BAD_FIELD,
        9,
        ("conversation_id", "outside"),
    ),
    (
        frame(id=9, command="answer", conversation_id="c", extra=1),
        ErrorCode.UNKNOWN_FIELD,
        9,
        ("'extra'", "conversation_id"),
    ),
    (frame(id=9, command="mute", conversation_id="c"), ErrorCode.MISSING_FIELD, 9, ("muted",)),
    (
        frame(id=9, command="mute", conversation_id="c", muted="yes"),
        ErrorCode.BAD_FIELD,
        9,
        ("muted", "true or false"),
    ),
    (
        frame(id=9, command="hold", conversation_id="c", held=1),
        ErrorCode.BAD_FIELD,
        9,
        ("held", "true or false"),
    ),
    (frame(id=9, command="dial"), ErrorCode.MISSING_FIELD, 9, ("number",)),
    (
        frame(id=9, command="dial", number="12"),
        ErrorCode.BAD_FIELD,
        9,
        ("number", "3 to 20 digits"),
    ),
    (frame(id=9, command="dial", number="1" * 21), ErrorCode.BAD_FIELD, 9, ("number",)),
    (frame(id=9, command="dial", number="12a45"), ErrorCode.BAD_FIELD, 9, ("number",)),
    (frame(id=9, command="dial", number="1+2345"), ErrorCode.BAD_FIELD, 9, ("number",)),
    (frame(id=9, command="dial", number="١٢٣٤٥"), ErrorCode.BAD_FIELD, 9, ("number",)),
    (frame(id=9, command="dial", number=5551234), ErrorCode.BAD_FIELD, 9, ("number", "number")),
    (
        frame(id=9, command="dial", number="555", record="003"),
        ErrorCode.BAD_FIELD,
        9,
        ("record", "object"),
    ),
    (
        frame(id=9, command="dial", number="555", record={"id": "1"}),
        ErrorCode.MISSING_FIELD,
        9,
        ("record.kind",),
    ),
    (
        frame(id=9, command="dial", number="555", record={"kind": "K", "id": 1}),
        ErrorCode.BAD_FIELD,
        9,
        ("record.id",),
    ),
    (
        frame(id=9, command="dial", number="555", record={"kind": "K", "id": "1", "url": "x"}),
        ErrorCode.UNKNOWN_FIELD,
        9,
        ("record.url", "record.kind"),
    ),
    (
        frame(
            id=9, command="dial", number="555", record={"kind": "K", "id": "1", "name": "n" * 257}
        ),
        ErrorCode.BAD_FIELD,
        9,
        ("record.name", "256"),
    ),
    (frame(id=9, command="dial", number="555", agent_id=""), ErrorCode.BAD_FIELD, 9, ("agent_id",)),
    (frame(id=9, command="stop_persistent", force=None), ErrorCode.BAD_FIELD, 9, ("force", "null")),
    (
        frame(id=9, command="stop_persistent", now=True),
        ErrorCode.UNKNOWN_FIELD,
        9,
        ("'now'", "force"),
    ),
]


@pytest.mark.parametrize(("text", "code", "command_id", "words"), BAD)
def test_bad_commands_raise_command_errors_naming_the_problem(
    text: str, code: ErrorCode, command_id: object, words: tuple[str, ...]
) -> None:
    """Each bad frame raises CommandError with its stable code, the readable id, and a message
    that names the field and what it allows."""
    with pytest.raises(CommandError) as info:
        parse_command(text)
    assert info.value.code == code
    assert info.value.command_id == command_id
    for word in words:
        assert word in info.value.message


def test_a_frame_just_over_64_kib_is_too_large_even_when_multibyte() -> None:
    """The limit counts UTF-8 bytes: 30,000 three-byte characters are too many."""
    record = {"kind": "K", "id": "1", "name": "€" * 30_000}
    text = json.dumps(
        {"type": "command", "id": 1, "command": "dial", "record": record}, ensure_ascii=False
    )
    assert len(text) < MAX_FRAME_BYTES < len(text.encode())
    with pytest.raises(CommandError) as info:
        parse_command(text)
    assert info.value.code == ErrorCode.TOO_LARGE


def test_commands_built_in_python_obey_the_same_rules() -> None:
    """A command value refuses what the parser refuses, with the same CommandError."""
    with pytest.raises(CommandError, match="number"):
        Dial("call me")
    with pytest.raises(CommandError, match="conversation_id"):
        Answer("")
    with pytest.raises(CommandError, match="muted"):
        Mute("c", "yes")  # type: ignore[arg-type]
    with pytest.raises(CommandError, match=r"record\.id"):
        Dial("555", record=CrmRecord("Contact", "a b"))
    with pytest.raises(CommandError, match="id"):
        CommandRequest(True, Answer("c"))
    assert Dial(" (555) 01-00 ").number == "5550100"


def test_command_errors_accept_handler_codes_but_not_arbitrary_text() -> None:
    """A handler may use its own lower-snake-case code; anything else is a programming error."""
    assert CommandError("unknown_conversation", "no such call").code == "unknown_conversation"
    with pytest.raises(ValueError, match="snake case"):
        CommandError("Bad Code!", "x")


# ---------------------------------------------------------------------------------------------
# Fuzzing


JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELD_NAMES = st.sampled_from(
    [
        "id",
        "conversation_id",
        "muted",
        "held",
        "number",
        "record",
        "agent_id",
        "force",
        "kind",
        "name",
        "x",
    ]
)


def _parse_or_command_error(text: str) -> CommandRequest | None:
    error: CommandError | None = None
    try:
        return parse_command(text)
    except CommandError as exc:
        error = exc
    assert error.code in set(ErrorCode)
    assert error.message
    return None


@given(st.text(max_size=300))
def test_any_text_parses_or_raises_command_error(text: str) -> None:
    """Whatever text arrives, the parser answers a command or a CommandError, nothing else."""
    _parse_or_command_error(text)


@given(JSON_VALUES)
def test_any_json_value_parses_or_raises_command_error(value: object) -> None:
    """Any JSON document, objects and arrays of any shape, gets a command or a CommandError."""
    _parse_or_command_error(json.dumps(value))


@given(
    st.sampled_from(COMMANDS),
    JSON_VALUES,
    st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=5),
)
@settings(max_examples=400)
def test_near_valid_commands_parse_or_raise_command_error(
    name: str, command_id: object, fields: dict[str, object]
) -> None:
    """Real command names with fields of every type and shape never escape as another error."""
    request = _parse_or_command_error(
        json.dumps({"type": "command", "id": command_id, "command": name} | fields)
    )
    if request is not None:
        assert request.command.name == name


IDS = st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True)
COMMAND_IDS = st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1) | IDS
NUMBERS = st.from_regex(r"\+?[0-9]{3,20}", fullmatch=True)
RECORDS = st.builds(CrmRecord, IDS, IDS, st.none() | st.text(max_size=256))
COMMAND_VALUES = st.one_of(
    st.builds(Answer, IDS),
    st.builds(Hangup, IDS),
    st.builds(Mute, IDS, st.booleans()),
    st.builds(Hold, IDS, st.booleans()),
    st.builds(Dial, NUMBERS, st.none() | RECORDS, st.none() | IDS),
    st.builds(StopPersistent, st.booleans()),
)


@given(st.builds(CommandRequest, COMMAND_IDS, COMMAND_VALUES))
def test_valid_commands_round_trip(request: CommandRequest) -> None:
    """A command encoded as a page sends it parses back to the same value."""
    assert parse_command(encode(request.to_json())) == request


# ---------------------------------------------------------------------------------------------
# Events out


BASE: dict[str, Any] = {
    "conversation_id": "conv-1",
    "agent_id": "agent-1",
    "participant_id": "part-1",
    "at": AT,
}
BASE_JSON = {
    "conversation_id": "conv-1",
    "agent_id": "agent-1",
    "participant_id": "part-1",
    "at": AT_TEXT,
}


def test_an_alerting_call_becomes_an_event_message() -> None:
    """The name is the class's, times are ISO-8601 UTC, attributes an object, the number added;
    a caller name with HTML in it goes out unchanged, as data."""
    event = CallAlerting(
        **BASE,
        direction=CallDirection.INBOUND,
        ani="+15551230001",
        dnis="+15550000000",
        queue_id="q1",
        queue_name="Support",
        caller_name="<img src=x onerror=alert(1)>",
        attributes=(("account", "42"), ("tier", "gold")),
    )
    assert event_message(event) == {
        "type": "event",
        "event": "call.alerting",
        "data": BASE_JSON
        | {
            "direction": "inbound",
            "ani": "+15551230001",
            "dnis": "+15550000000",
            "queue_id": "q1",
            "queue_name": "Support",
            "caller_name": "<img src=x onerror=alert(1)>",
            "attributes": {"account": "42", "tier": "gold"},
            "customer_number": "+15551230001",
            "key": "conv-1:part-1:call.alerting",
        },
    }


PARIS = timezone(timedelta(hours=1))

EVENTS: list[tuple[object, str, dict[str, Any]]] = [
    (
        CallConnected(**BASE, connected_at=datetime(2026, 1, 2, 10, 30, tzinfo=PARIS)),
        "call.connected",
        {"connected_at": AT_TEXT},
    ),
    (
        CallHeld(**BASE, occurrence=2),
        "call.held",
        {"occurrence": 2, "key": "conv-1:part-1:call.held:2"},
    ),
    (CallResumed(**BASE), "call.resumed", {"occurrence": 1}),
    (
        CallTransferred(**BASE, to_queue_id="q2"),
        "call.transferred",
        {"to_queue_id": "q2", "to_user_id": None},
    ),
    (
        CallEnded(
            **BASE,
            direction=CallDirection.OUTBOUND,
            ended_at=AT,
            duration_seconds=61,
            who_hung_up=HungUpBy.CUSTOMER,
            answered=True,
        ),
        "call.ended",
        {
            "direction": "outbound",
            "ended_at": AT_TEXT,
            "started_at": None,
            "who_hung_up": "customer",
            "answered": True,
            "missed": False,
        },
    ),
    (
        CallWrapup(**BASE, code="sale", notes="n"),
        "call.wrapup",
        {"code": "sale", "notes": "n", "duration_seconds": None},
    ),
    (
        PersistentConnectionUp("agent-1", "st-1", "login", None, AT),
        "phone.persistent_connection_up",
        {
            "agent_id": "agent-1",
            "station_id": "st-1",
            "via": "login",
            "conversation_id": None,
            "at": AT_TEXT,
        },
    ),
    (
        PersistentConnectionDown("agent-1", None, DownReason.IDLE_TIMEOUT, "600 s idle", AT),
        "phone.persistent_connection_down",
        {"reason": "idle_timeout", "detail": "600 s idle", "dropped_conversation_id": None},
    ),
    (MicrophoneLive("agent-1", True, AT), "phone.microphone_live", {"live": True, "at": AT_TEXT}),
    (
        ConnectionStateChanged(
            "agent-1", ConnectionState.ESTABLISHING, ConnectionState.PERSISTED, AT
        ),
        "phone.connection_state",
        {"previous": "ESTABLISHING", "state": "PERSISTED"},
    ),
    (
        PresenceChanged("agent-1", "ON_QUEUE", "p-1", "", "AVAILABLE", AT),
        "presence.changed",
        {"system_presence": "ON_QUEUE", "presence_id": "p-1", "previous": "AVAILABLE"},
    ),
    (
        RoutingStatusChanged("agent-1", RoutingStatus.IDLE, None, AT),
        "presence.routing_status",
        {"status": "IDLE", "previous": None},
    ),
]


@pytest.mark.parametrize(("event", "name", "expected"), EVENTS)
def test_every_event_kind_becomes_an_event_message(
    event: Any, name: str, expected: dict[str, Any]
) -> None:
    """Call, phone and presence events go out under their stable names, with plain JSON data."""
    message = event_message(event)
    assert message["type"] == "event"
    assert message["event"] == name == type(event).name
    assert expected.items() <= message["data"].items()
    assert json.loads(encode(message)) == message


def test_naive_times_and_foreign_objects_are_refused() -> None:
    """A naive datetime (its zone a guess) raises ValueError; a non-event raises TypeError."""
    with pytest.raises(ValueError, match="timezone-aware"):
        event_message(MicrophoneLive("agent-1", True, datetime(2026, 1, 1)))
    with pytest.raises(TypeError, match="not a crmphone event"):
        event_message({"type": "event"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("records", "outcome"),
    [
        ((), "none"),
        ((CrmRecord("Contact", "003A", "Ada"),), "one"),
        ((CrmRecord("Contact", "003A", "Ada"), CrmRecord("Lead", "00QB")), "many"),
    ],
)
def test_pop_messages_carry_the_outcome_and_records(
    records: tuple[CrmRecord, ...], outcome: str
) -> None:
    """A screen pop names the call, the outcome, every record and the number."""
    match = CallerMatch(number="+15551230001", records=records)
    assert pop_message("conv-1", match, agent_id="agent-1") == {
        "type": "pop",
        "call": "conv-1",
        "agent_id": "agent-1",
        "outcome": outcome,
        "records": [{"kind": r.kind, "id": r.id, "name": r.name} for r in records],
        "number": "+15551230001",
    }


# ---------------------------------------------------------------------------------------------
# Replies, welcome, hello


def test_results_and_errors_have_their_documented_shapes() -> None:
    """A success carries data, a failure an error object; an unreadable frame's id is null."""
    assert result_message("a1", {"conversation_id": "c"}) == {
        "type": "result",
        "id": "a1",
        "ok": True,
        "data": {"conversation_id": "c"},
    }
    error = CommandError(ErrorCode.BAD_JSON, "not JSON")
    assert error_message(None, error) == {
        "type": "result",
        "id": None,
        "ok": False,
        "error": {"code": "bad_json", "message": "not JSON"},
    }
    welcome = welcome_message("zendesk", "c7")
    assert welcome["protocol"] == PROTOCOL == "crmphone.bridge.v1"
    assert welcome["commands"] == sorted(COMMANDS)
    assert (welcome["client"], welcome["session"]) == ("zendesk", "c7")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (CommandError("unknown_conversation", "no such call"), "unknown_conversation"),
        (InvalidStateError("the call is not ringing"), "invalid_state"),
        (ConfigError("no dialer", key="x"), "unavailable"),
        (UsageError("no"), "refused"),
        (PlatformError("503", status=503), "remote_error"),
        (CrmRetryableError("later"), "remote_error"),
    ],
)
def test_crmphone_refusals_map_to_stable_codes(error: UsageError, code: str) -> None:
    """A handler's crmphone errors become failed results with a code the page can switch on."""
    mapped = CommandError.from_refusal(error, 4)
    assert (mapped.code, mapped.command_id) == (code, 4)
    assert mapped.message == str(error)


def test_encode_escapes_and_refuses_what_json_cannot_say() -> None:
    """Frames are ASCII (a lone surrogate stays escaped); NaN or objects are a UsageError."""
    text = encode({"type": "event", "name": "Zoë \ud800"})
    assert text.isascii()
    assert json.loads(text)["name"] == "Zoë \ud800"
    with pytest.raises(UsageError):
        encode({"x": float("nan")})
    with pytest.raises(UsageError):
        encode({"x": object()})


def test_a_hello_parses_and_its_token_is_never_shown() -> None:
    """A hello yields its token and client; the token is absent from the value's repr."""
    hello = parse_hello(json.dumps({"type": "hello", "token": "s3cret-value", "client": "zendesk"}))
    assert (hello.token, hello.client) == ("s3cret-value", "zendesk")
    assert "s3cret-value" not in repr(hello)
    with_protocol = {"type": "hello", "token": "t", "client": "c", "protocol": PROTOCOL}
    assert parse_hello(json.dumps(with_protocol)).client == "c"


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"type": "command", "id": 1, "command": "answer"}, "unknown_type"),
        ({"type": "hello", "client": "x"}, "missing_field"),
        ({"type": "hello", "token": 5, "client": "x"}, "bad_field"),
        ({"type": "hello", "token": "", "client": "x"}, "bad_field"),
        ({"type": "hello", "token": "t", "client": "a b"}, "bad_field"),
        ({"type": "hello", "token": "t", "client": "x", "protocol": "v0"}, "bad_field"),
        ({"type": "hello", "token": "t", "client": "x", "extra": 1}, "unknown_field"),
    ],
)
def test_malformed_hellos_raise_command_errors(message: dict[str, Any], code: str) -> None:
    """A hello that is not one, lacks a field, or has a bad one raises CommandError."""
    with pytest.raises(CommandError) as info:
        parse_hello(json.dumps(message))
    assert info.value.code == code


def test_a_bad_token_field_is_never_echoed() -> None:
    """The message about an ill-typed token names the field, not the value sent."""
    secret = "x" * 600
    with pytest.raises(CommandError) as info:
        parse_hello(json.dumps({"type": "hello", "token": secret, "client": "c"}))
    assert secret[:20] not in info.value.message
