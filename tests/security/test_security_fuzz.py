"""Hostile input, generated: the notification path, the phone's signalling parser, the config
loader and the bridge's command door (end to end, over a real socket).

Each property is the documented contract under any input: a value or the one documented error
type, never another exception, never a hang (every input is bounded), never a secret echoed.
What ``tests/notifications/test_protocol.py`` and ``tests/bridge/test_bridge_protocol.py``
already fuzz (arbitrary text and JSON into the frame and command parsers) is not repeated: these
go further, with inputs shaped like the real thing so they get past the first checks.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Close
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from crmphone._serving import ServiceThread
from crmphone.bridge import (
    CLOSE_UNAUTHENTICATED,
    COMMANDS,
    MAX_FRAME_BYTES,
    BridgeServer,
    BridgeSettings,
    BridgeToken,
    Command,
    CommandError,
    ConnectedClient,
    parse_command,
)
from crmphone.calls import CallTracker
from crmphone.clock import ManualClock
from crmphone.config import ConnectorConfig, parse_config, security_warnings
from crmphone.errors import ConfigError
from crmphone.notifications.messages import MalformedFrame, Message, TopicEvent
from crmphone.notifications.protocol import ChannelProtocol, MalformedReason, ProtocolSettings
from crmphone.phone.signalling import MalformedSignal, Signal, parse_signal
from crmphone.presence import PresenceTracker

pytestmark = pytest.mark.timeout(120)

# Each call on one input must finish well within this: a generous bound on a shared machine, far
# below what a quadratic blow-up or a hang would take.
CALL_BOUND = 2.0

AGENT = "5a1c2b3d-0000-4000-8000-00000000a9e7"

# ---------------------------------------------------------------------------------------------
# Values


def _no_surrogates(max_size: int) -> st.SearchStrategy[str]:
    """Text TOML can hold: any character but a lone surrogate."""
    return st.text(st.characters(exclude_categories=["Cs"]), max_size=max_size)


JSON: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)

TIMES = st.sampled_from(
    [
        "2026-01-02T09:30:00.000Z",
        "2026-01-02T09:30:00Z",
        "2026-13-45T99:99:99Z",
        "1970-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999Z",
        "0001-01-01T00:00:00Z",
        "2026-01-02",
        "",
        "not a time",
    ]
) | st.text(max_size=30)

# Field names the platform's bodies use, so generated bodies reach past the first checks.
GENESYS_KEYS = st.sampled_from(
    [
        "id",
        "participants",
        "purpose",
        "state",
        "user",
        "queue",
        "startTime",
        "connectedTime",
        "endTime",
        "held",
        "muted",
        "recording",
        "wrapup",
        "wrapupRequired",
        "attributes",
        "calls",
        "direction",
        "ani",
        "dnis",
        "address",
        "name",
        "disconnectType",
        "initialState",
        "alertingTimeoutMs",
        "presenceDefinition",
        "systemPresence",
        "modifiedDate",
        "routingStatus",
        "status",
        "code",
        "notes",
        "durationSeconds",
        "message",
        "source",
        "languageLabels",
        "primary",
    ]
)
GENESYS_TEXT = st.sampled_from(
    [
        AGENT,
        "agent",
        "customer",
        "acd",
        "ivr",
        "user",
        "alerting",
        "contacting",
        "dialing",
        "connected",
        "disconnected",
        "terminated",
        "inbound",
        "outbound",
        "Available",
        "AVAILABLE",
        "Busy",
        "Offline",
        "IDLE",
        "INTERACTING",
        "OFF_QUEUE",
        "tel:+4930123456",
        "+4930123456",
        "client",
        "endpoint",
        "peer",
        "",
    ]
)


def _genesys_like(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    leaves = GENESYS_TEXT | TIMES | JSON
    return st.dictionaries(GENESYS_KEYS, children | leaves, max_size=10) | st.lists(
        children, max_size=3
    )


BODIES: st.SearchStrategy[Any] = st.recursive(
    GENESYS_TEXT | TIMES | JSON, _genesys_like, max_leaves=30
)

TOPICS = st.sampled_from(
    [
        "channel.metadata",
        "v2.system.socket_closing",
        "v2.system.no_longer_subscribed",
        "v2.system.token_revoked",
        "v2.system.token_revoked.x",
        "v2.system.other",
        "v2.system.",
        "v2.system",
        f"v2.users.{AGENT}.conversations.calls",
        f"v2.users.{AGENT}.conversations",
        f"v2.users.{AGENT}.presence",
        f"v2.users.{AGENT}.routingStatus",
        "v2.users.someone-else.conversations.calls",
        "v2.users..conversations.calls",
        "",
    ]
) | st.text(max_size=60)


@st.composite
def frames(draw: st.DrawFn) -> str:
    """A frame shaped like the platform's: some fields present, each of any type."""
    frame: dict[str, Any] = {}
    if draw(st.booleans()):
        frame["topicName"] = draw(TOPICS | JSON)
    if draw(st.booleans()):
        frame["eventBody"] = draw(BODIES)
    if draw(st.booleans()):
        frame["version"] = draw(st.sampled_from(["2", "1.0"]) | JSON)
    if draw(st.booleans()):
        frame["metadata"] = draw(st.fixed_dictionaries({"CorrelationId": JSON}) | JSON)
    text = json.dumps(frame, ensure_ascii=draw(st.booleans()))
    mutation = draw(st.sampled_from(["none", "none", "truncate", "wrap", "nan", "dupe"]))
    if mutation == "truncate":
        return text[: draw(st.integers(0, len(text)))]
    if mutation == "wrap":
        return f"[{text}]"
    if mutation == "nan":
        return text.replace("}", ', "x": NaN}', 1)  # stdlib JSON's extension, orjson's error
    if mutation == "dupe":
        return text.replace("{", '{"topicName": 1, ', 1)
    return text


# ---------------------------------------------------------------------------------------------
# The notification path: frame → message → call and presence events


def _timed(call: Any, *args: Any) -> Any:
    started = time.perf_counter()
    result = call(*args)
    elapsed = time.perf_counter() - started
    assert elapsed < CALL_BOUND, f"{call.__qualname__} took {elapsed:.2f} s on one input"
    return result


@given(st.lists(frames(), min_size=1, max_size=8))
@settings(max_examples=300, deadline=None)
def test_platform_shaped_frames_become_messages_and_events_without_raising(
    texts: list[str],
) -> None:
    """Frames shaped like the platform's, of any content, become exactly one message each; the
    topic events among them go through the call and presence trackers, which never raise."""
    clock = ManualClock()
    protocol = ChannelProtocol(ProtocolSettings(), clock.monotonic())
    calls = CallTracker([AGENT], clock)
    presence = PresenceTracker([AGENT], clock)
    for text in texts:
        message = _timed(protocol.receive_text, text, clock.monotonic())
        assert isinstance(message, Message)
        if isinstance(message, TopicEvent):
            assert isinstance(message.topic_name, str)
            assert message.topic_name
            assert isinstance(_timed(calls.feed_event, message), list)
            assert isinstance(_timed(presence.feed, message), list)
        elif isinstance(message, MalformedFrame):
            assert message.reason
            assert len(message.excerpt) <= 120 * 10  # printable, bounded: safe for a log line
        clock.advance(0.5)
    assert protocol.stats.frames == len(texts)


@given(
    st.sampled_from(["[", '{"a":', '{"topicName":"t","eventBody":[', "[{}"]),
    st.integers(min_value=1, max_value=300_000),
)
@settings(max_examples=40, deadline=None)
def test_deep_nesting_is_a_malformed_or_parsed_frame(opening: str, depth: int) -> None:
    """However deep a frame nests (up to 1 MiB), it is parsed or malformed, never an error."""
    text = opening * depth
    protocol = ChannelProtocol(ProtocolSettings(), 0.0)
    message = _timed(protocol.receive_text, text, 1.0)
    assert isinstance(message, MalformedFrame)


@given(st.integers(min_value=1, max_value=4096), _no_surrogates(max_size=2000))
@settings(max_examples=150, deadline=None)
def test_the_size_limit_counts_utf8_bytes_exactly(limit: int, text: str) -> None:
    """A frame is too large exactly when its UTF-8 size exceeds the limit, whatever it holds."""
    protocol = ChannelProtocol(ProtocolSettings(max_frame_size=limit), 0.0)
    message = protocol.receive_text(text, 1.0)
    too_large = len(text.encode("utf-8")) > limit
    is_too_large = isinstance(message, MalformedFrame) and message.reason.startswith(
        MalformedReason.TOO_LARGE
    )
    assert is_too_large == too_large


@given(st.binary(max_size=4096))
@settings(max_examples=100, deadline=None)
def test_binary_frames_are_counted_as_malformed(data: bytes) -> None:
    """Any binary frame is a malformed 'binary frame' of its exact size."""
    protocol = ChannelProtocol(ProtocolSettings(), 0.0)
    message = protocol.receive_bytes(data, 1.0)
    assert (message.reason, message.size) == (MalformedReason.BINARY, len(data))
    assert message.excerpt.isprintable()


# ---------------------------------------------------------------------------------------------
# The phone's signalling (the other channel the platform writes to)


@st.composite
def signals(draw: st.DrawFn) -> str:
    """A signalling frame: a known type with fields of any type, or anything at all."""
    kind = draw(st.sampled_from(["propose", "offer", "terminate", "error", "pong"]) | JSON)
    fields = draw(
        st.dictionaries(
            st.sampled_from(
                [
                    "sessionId",
                    "purpose",
                    "conversationId",
                    "autoAnswer",
                    "persistentConnection",
                    "stationId",
                    "sdp",
                    "reason",
                    "code",
                    "message",
                ]
            ),
            st.sampled_from(["call", "persistent-setup", "v=0\r\n", "s-1"]) | JSON,
            max_size=6,
        )
    )
    text = json.dumps({"type": kind, **fields})
    return draw(st.sampled_from([text, text[: len(text) // 2], "[" * 5000, "{}"]))


@given(signals() | st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_signalling_frame_is_a_signal_or_nothing(text: str) -> None:
    """parse_signal answers a Signal (MalformedSignal for what it cannot use) or None, never an
    error: one raising would end the phone's signalling task."""
    result = _timed(parse_signal, text)
    assert result is None or isinstance(result, Signal)
    if isinstance(result, MalformedSignal):
        assert result.problem


def test_signalling_nested_past_the_decoders_stack_is_malformed() -> None:
    """A frame nested deeper than the JSON decoder's recursion limit is malformed, not fatal."""
    assert isinstance(parse_signal("[" * 200_000), MalformedSignal)


# ---------------------------------------------------------------------------------------------
# The config loader

SECRET = "fuzz-secret-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
AGENT_TOKEN = "fuzz-agent-token-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
ENVIRON = {
    "CRMPHONE_CLIENT_ID": "client-1",
    "CRMPHONE_CLIENT_SECRET": SECRET,
    "CRMPHONE_AGENT_TOKEN": AGENT_TOKEN,
    "GC_SECRET": SECRET,
    "SF_SECRET": SECRET,
}


def _toml_string(text: str) -> str:
    escaped = []
    for char in text:
        if char in '"\\':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, datetime | date | clock_time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    assert isinstance(value, dict)
    pairs = (f"{_toml_string(k)} = {_toml_value(v)}" for k, v in value.items())
    return "{" + ", ".join(pairs) + "}"


TOML_LEAVES = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | _no_surrogates(max_size=40)
    | st.datetimes(timezones=st.none() | st.just(UTC))
    | st.dates()
)
TOML_VALUES: st.SearchStrategy[Any] = st.recursive(
    TOML_LEAVES,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(_no_surrogates(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)
# Values a real file would hold, so generated files get past the first checks.
_PLAUSIBLE_VALUES = st.sampled_from(
    [
        "sandbox",
        "genesys",
        "GENESYS",
        "mypurecloud.de",
        "usw2.pure.cloud",
        "nowhere.example",
        "https://api.mypurecloud.de",
        "https://login.mypurecloud.de",
        "http://127.0.0.1:8080",
        "http://example.com",
        "ftp://x",
        "CRMPHONE_CLIENT_ID",
        "CRMPHONE_CLIENT_SECRET",
        "CRMPHONE_AGENT_TOKEN",
        "GC_SECRET",
        "UNSET_VARIABLE",
        "lower_name",
        "1BAD",
        "",
        "salesforce",
        "zendesk",
        "webhook",
        "dashboard",
        "normal",
        "full",
        "json",
        "text",
        "debug",
        "info",
        "ca.pem",
        "~/ca.pem",
        "~nosuchaccount/ca.pem",
        "/etc/hosts",
        "outbox.sqlite3",
        "127.0.0.1",
        "0.0.0.0",  # noqa: S104 - a value to parse, nothing binds here
        "::1",
        "https://*.my.salesforce.com",
        "https://user:pw@hooks.example.test:8443/x",
        "https://h:notaport/x",
        "https://[::1",
        True,
        False,
        "https://*",
        "'unsafe-inline'",
        "agent-1",
        "true",
        "false",
        "12",
        "1e3",
        "a\x00b",
    ]
)
# Mostly what a file would hold, sometimes anything TOML can say.
PLAUSIBLE = st.integers(0, 3).flatmap(lambda n: TOML_VALUES if n == 3 else _PLAUSIBLE_VALUES)


def _mostly(real: tuple[str, ...]) -> st.SearchStrategy[str]:
    """One of the ``real`` key names, and one time in ten any name at all."""
    return st.integers(0, 9).flatmap(
        lambda n: _no_surrogates(max_size=12) if n == 9 else st.sampled_from(real)
    )


SECTIONS: dict[str, tuple[str, ...]] = {
    "platform": (
        "kind",
        "url",
        "api_base",
        "login_base",
        "region",
        "client_id_env",
        "client_secret_env",
        "client_secret",
        "verify",
    ),
    "agents": ("ids", "presence", "crm_users"),
    "plugins": ("allow",),
    "outbox": (
        "path",
        "synchronous",
        "max_attempts",
        "initial_delay",
        "max_delay",
        "max_age",
        "pop_ttl",
    ),
    "log": ("level", "format"),
    "bridge": (
        "enabled",
        "host",
        "port",
        "token_file",
        "tls_cert_file",
        "tls_key_file",
        "pages",
        "allowed_origins",
        "script_sources",
        "page_adapters",
        "token",
    ),
    "phone": (
        "agent",
        "token_env",
        "auto_answer",
        "inactivity_timeout",
        "keep_microphone_live",
        "token",
    ),
}
ADAPTER_KEYS = ("name", "instance", "threads", "timeout", "verify", "url", "headers", "domain")


@st.composite
def config_files(draw: st.DrawFn) -> str:
    """A connector.toml from the real section and key names, with values of any kind."""
    lines: list[str] = []
    for section, names in SECTIONS.items():
        if not draw(st.booleans()):
            continue
        lines.append(f"[{section}]")
        chosen = draw(st.dictionaries(_mostly(names), PLAUSIBLE, max_size=5))
        lines += [f"{_toml_string(k)} = {_toml_value(v)}" for k, v in chosen.items()]
    for _ in range(draw(st.integers(0, 2))):
        lines.append("[[adapters]]")
        chosen = draw(st.dictionaries(_mostly(ADAPTER_KEYS), PLAUSIBLE, max_size=5))
        lines += [f"{_toml_string(k)} = {_toml_value(v)}" for k, v in chosen.items()]
    if draw(st.integers(0, 7)) == 7:
        key = draw(_no_surrogates(max_size=12))
        lines.insert(0, f"{_toml_string(key)} = {_toml_value(draw(PLAUSIBLE))}")
    return "\n".join(lines) + "\n"


def _parse(text: str, base_dir: Path) -> ConnectorConfig | ConfigError:
    try:
        config: ConnectorConfig = _timed(
            lambda: parse_config(text, base_dir=base_dir, environ=ENVIRON)
        )
    except ConfigError as exc:
        return exc
    return config


def _check_outcome(outcome: ConnectorConfig | ConfigError) -> None:
    if isinstance(outcome, ConfigError):
        message = str(outcome)
        assert message.strip()
        # Every refusal names its key, except a syntax error, which names the line instead.
        assert outcome.key or "invalid TOML" in message or "unknown top-level" in message, message
        shown = f"{message}\n{outcome!r}"
    else:
        # What check prints and the connector logs is computed from any config that parses.
        warnings = _timed(lambda: security_warnings(outcome))
        shown = repr(outcome) + str(outcome) + "\n".join(warnings)
    for secret in (SECRET, AGENT_TOKEN):
        assert secret not in shown


@given(text=config_files())
@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_config_files_of_real_keys_parse_or_raise_a_config_error(text: str, tmp_path: Path) -> None:
    """Any file built from the real tables and keys is a ConnectorConfig or a ConfigError that
    names its key; no other exception, and the secrets in the environment never show."""
    (tmp_path / "ca.pem").touch()
    _check_outcome(_parse(text, tmp_path))


@given(text=_no_surrogates(max_size=400) | st.text(max_size=400))
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_text_parses_or_raises_a_config_error(text: str, tmp_path: Path) -> None:
    """Raw text of any kind, valid TOML or not: a ConnectorConfig or a ConfigError."""
    _check_outcome(_parse(text, tmp_path))


@pytest.mark.parametrize(
    "text",
    [
        '[outbox]\npath = "~nosuchaccount/outbox.sqlite3"\n',
        '[platform]\nverify = "~nosuchaccount/ca.pem"\n',
        '[bridge]\ntoken_file = "~nosuchaccount/token"\n',
        '[outbox]\npath = "a\\u0000b"\n',
        '[[adapters]]\nname = "webhook"\nverify = "ca\\u0000.pem"\n',
    ],
)
def test_paths_no_file_system_takes_are_config_errors(text: str, tmp_path: Path) -> None:
    """A ~user that does not exist, or a NUL in a path: a ConfigError naming the key, not the
    RuntimeError or ValueError the path library would raise later."""
    outcome = _parse(text, tmp_path)
    assert isinstance(outcome, ConfigError)
    assert outcome.key


# ---------------------------------------------------------------------------------------------
# The bridge's command door, end to end


class _Handler:
    """Counts the commands that reach it (from the bridge's thread) and answers each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    async def handle(self, command: Command, client: ConnectedClient) -> dict[str, Any]:
        with self._lock:
            self.count += 1
        return {"handled": command.name}


class _Bridge:
    def __init__(self, thread: ServiceThread, handler: _Handler, token: BridgeToken) -> None:
        self.thread, self.handler, self.token = thread, handler, token
        self.server: BridgeServer = thread.service

    @property
    def origin(self) -> str:
        """The bridge's own origin, always allowed."""
        return self.server.url

    def page(self, origin: str | None = None) -> ClientConnection:
        """A socket to the bridge, not yet authenticated."""
        return connect(
            self.server.ws_url,
            origin=Origin(origin if origin is not None else self.origin),
            open_timeout=5,
            close_timeout=2,
            max_size=None,
        )


@pytest.fixture(scope="module")
def bridge() -> Iterator[_Bridge]:
    """One real bridge for the module, on its own thread (the tests' clients are synchronous)."""
    token = BridgeToken.generate()
    handler = _Handler()
    settings_ = BridgeSettings(token=token, hello_timeout=2.0, close_timeout=1.0)
    thread = ServiceThread(
        BridgeServer(settings_, handler), name="fuzz-bridge", what="the bridge", join_timeout=5
    )
    thread.start()
    try:
        yield _Bridge(thread, handler, token)
    finally:
        thread.close()


def _close(ws: ClientConnection) -> Close | None:
    """Read until the bridge closes the socket; the close frame it sent."""
    while True:
        try:
            ws.recv(timeout=5)
        except ConnectionClosed as closed:
            return closed.rcvd


@st.composite
def first_frames(draw: st.DrawFn, token: str) -> str | bytes:
    """What a page might send first, never the right token: near-misses of it, hellos with
    fields of any type, arbitrary text, binary."""
    wrong = draw(
        st.sampled_from(
            [token[:-1], token + "x", token.upper(), token[1:], " " + token, token[::-1], ""]
        )
        | JSON
    )
    hello = {"type": draw(st.sampled_from(["hello", "Hello", "command"]) | JSON), "token": wrong}
    hello |= draw(st.dictionaries(st.sampled_from(["client", "protocol", "x"]), JSON, max_size=3))
    return draw(
        st.sampled_from([json.dumps(hello)]) | st.text(max_size=200) | st.binary(max_size=200)
    )


@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_no_first_frame_without_the_token_gets_in(bridge: _Bridge, data: st.DataObject) -> None:
    """Whatever a page sends first without the exact token, the bridge closes with 4401, the
    close reason never holds the token, and no command reaches the handler."""
    token = bridge.token.reveal()
    frame = data.draw(first_frames(token))
    before = bridge.handler.count
    with bridge.page() as ws:
        ws.send(frame)
        # A command right behind it must not slip in either (it may find the socket closed).
        with contextlib.suppress(ConnectionClosed):
            ws.send(json.dumps({"type": "command", "id": 1, "command": "hangup", "x": 1}))
        closed = _close(ws)
    assert closed is not None
    assert closed.code == CLOSE_UNAUTHENTICATED
    assert token not in closed.reason
    assert bridge.handler.count == before


ALLOWED_ORIGINS = st.builds(
    "https://{}.my.salesforce.com".format,
    st.from_regex(r"[a-z]([a-z0-9-]{0,18}[a-z0-9])?", fullmatch=True),
)
FOREIGN_ORIGINS = st.sampled_from(
    [
        "https://acme.my.salesforce.com.evil.test",
        "https://evilmy.salesforce.com",
        "http://acme.my.salesforce.com",
        "https://acme.my.salesforce.com:8443",
        "null",
        "https://my.salesforce.com@evil.test",
        "https://127.0.0.1.evil.test",
        "file://",
        "",
    ]
) | st.builds("https://{}.evil.test".format, st.from_regex(r"[a-z]{1,12}", fullmatch=True))


@given(origin=FOREIGN_ORIGINS)
@settings(max_examples=40, deadline=None)
def test_foreign_origins_are_refused_at_the_handshake(bridge: _Bridge, origin: str) -> None:
    """Look-alike and foreign origins never get a socket (HTTP 403 at the handshake)."""
    with pytest.raises(InvalidStatus) as refused:
        bridge.page(origin=origin).close()
    assert refused.value.response.status_code == 403


@given(origin=ALLOWED_ORIGINS)
@settings(max_examples=20, deadline=None)
def test_allowed_origins_get_a_socket(bridge: _Bridge, origin: str) -> None:
    """Origins matching the default patterns connect (and still need the token)."""
    with bridge.page(origin=origin) as ws:
        ws.send(json.dumps({"type": "hello", "token": "x" * 43, "client": "dashboard"}))
        closed = _close(ws)
    assert closed is not None
    assert closed.code == CLOSE_UNAUTHENTICATED


@st.composite
def command_frames(draw: st.DrawFn) -> str | bytes:
    """Frames after a good hello: commands with fields of any type, other text, binary."""
    fields = draw(
        st.dictionaries(
            st.sampled_from(
                ["conversation_id", "muted", "held", "number", "record", "agent_id", "force", "x"]
            ),
            st.sampled_from(["c-1", "+4930123456", True, 1]) | JSON,
            max_size=4,
        )
    )
    command = {
        "type": draw(st.sampled_from(["command"]) | JSON),
        "id": draw(st.integers(-(2**53), 2**53) | st.text(max_size=20) | JSON),
        "command": draw(st.sampled_from(COMMANDS) | JSON),
        **fields,
    }
    return draw(
        st.sampled_from([json.dumps(command)])
        | st.text(max_size=300)
        | st.binary(max_size=100)
        | st.just("[" * 30_000)
        | st.just(json.dumps({"pad": "x" * (MAX_FRAME_BYTES - 100)}))
    )


def _expected_ok(frame: str | bytes) -> bool | None:
    """True when the bridge should carry the frame out, False when it should refuse it."""
    if isinstance(frame, bytes):
        return False
    try:
        parse_command(frame)
    except CommandError:
        return False
    return True


@given(st.lists(command_frames(), min_size=1, max_size=6))
@settings(max_examples=80, deadline=None)
def test_authenticated_pages_get_one_result_per_frame_and_stay_connected(
    bridge: _Bridge, frames_: list[str | bytes]
) -> None:
    """After a good hello, every frame gets exactly one result (ok for a valid command, a failed
    result with a stable code otherwise), the socket stays open, and only valid commands reach
    the handler."""
    before = bridge.handler.count
    with bridge.page() as ws:
        ws.send(
            json.dumps({"type": "hello", "token": bridge.token.reveal(), "client": "dashboard"})
        )
        welcome = json.loads(ws.recv(timeout=5))
        assert welcome["type"] == "welcome"
        for frame in frames_:
            ws.send(frame)
        results = [json.loads(ws.recv(timeout=5)) for _ in frames_]
        ws.send(
            json.dumps(
                {"type": "command", "id": "last", "command": "answer", "conversation_id": "c"}
            )
        )
        last = json.loads(ws.recv(timeout=5))
    assert all(result["type"] == "result" for result in results)
    expected = sorted(_expected_ok(frame) is True for frame in frames_)
    assert sorted(result["ok"] for result in results) == expected
    for result in results:
        if not result["ok"]:
            assert result["error"]["code"]
            assert result["error"]["message"]
    assert (last["id"], last["ok"]) == ("last", True)
    assert bridge.handler.count - before == sum(expected) + 1


HTTP_PATHS = st.sampled_from(
    [
        "/",
        "/healthz",
        "/ws",
        "/dashboard/",
        "/dashboard/index.html",
        "/../etc/passwd",
        "/dashboard/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "//etc/passwd",
        "/dashboard/index.html?token=x",
        "/salesforce/softphone.html",
    ]
) | st.builds(
    "/{}".format, st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60)
)


@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]),
    path=HTTP_PATHS,
)
@settings(max_examples=150, deadline=None)
def test_any_http_request_is_answered_without_a_server_error_or_the_token(
    bridge: _Bridge, method: str, path: str
) -> None:
    """Any method on any path: a 2xx page, a 4xx refusal, never a 5xx, never the token, never a
    file from outside the pages."""
    with httpx.Client(base_url=bridge.server.url, timeout=5) as http:
        response = http.request(method, path)
    assert response.status_code < 500, (method, path, response.status_code)
    assert bridge.token.reveal() not in response.text
    assert "root:" not in response.text
