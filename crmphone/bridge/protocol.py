"""The bridge's wire format, without the socket: JSON text frames in, values out, and back.

Version ``crmphone.bridge.v1``. Every frame is one JSON object with a ``"type"``.

Page → bridge:

.. code-block:: text

    {"type": "hello", "token": "…", "client": "salesforce"}          first frame, exactly once
    {"type": "command", "id": 7, "command": "answer", "conversation_id": "…"}
    {"type": "command", "id": "a-1", "command": "hangup", "conversation_id": "…"}
    {"type": "command", "id": 8, "command": "mute", "conversation_id": "…", "muted": true}
    {"type": "command", "id": 9, "command": "hold", "conversation_id": "…", "held": false}
    {"type": "command", "id": 10, "command": "dial", "number": "+1 (555) 123-0001",
     "record": {"kind": "Contact", "id": "003…", "name": "Ada"}, "agent_id": "…"}  record, agent_id optional
    {"type": "command", "id": 11, "command": "stop_persistent", "force": false}    force optional

Bridge → page:

.. code-block:: text

    {"type": "welcome", "protocol": "crmphone.bridge.v1", "client": "salesforce", "session": "c1",
     "commands": [...], "max_frame": 65536}
    {"type": "event", "event": "call.alerting", "data": {...}}        see event_message()
    {"type": "pop", "call": "<conversation id>", "agent_id": "…" | null,
     "outcome": "one" | "many" | "none", "records": [{"kind", "id", "name"}], "number": "…" | null,
     "adapter": "salesforce"}                                         adapter: when known
    {"type": "agents", "agents": [{"id": "…", "name": "…"}]}          the roster (replaces the last)
    {"type": "logged", "adapter": "salesforce", "call": "<conversation id>", "agent_id": "…",
     "stage": "connected" | "ended" | "wrapped_up", "direction": "inbound" | "outbound",
     "number": "…" | null, "caller_name": "…" | null, "record": {"kind", "id", "name"} | null,
     "at": "…"}                                                       a CRM write completed
    {"type": "result", "id": 7, "ok": true, "data": {...}}
    {"type": "result", "id": 7 | null, "ok": false, "error": {"code": "…", "message": "…"}}

:func:`parse_command` and :func:`parse_hello` never raise anything but :class:`CommandError`, whose
``code`` is one of :class:`ErrorCode` (stable: pages may switch on it) and whose message names the
field and what it allows. A result's ``id`` is the command's, or ``null`` when the frame was too
broken to read one. Text in outgoing messages (caller names, record names) is data: pages render
it as text, never as HTML.

Error codes:

===================  ==================================================================
``too_large``        the frame is longer than :data:`MAX_FRAME_BYTES` (UTF-8)
``bad_frame``        a binary frame (the protocol is JSON text)
``bad_json``         not JSON (or NaN/Infinity, a repeated key, absurd nesting)
``not_object``       JSON, but not an object
``unknown_type``     ``type`` is missing or not ``command`` (after the hello)
``unknown_command``  ``command`` names no command
``missing_field``    a required field is absent
``unknown_field``    a field the command does not take
``bad_field``        a field has the wrong type or an unacceptable value
``busy``             too many commands of this page are still running
``invalid_state``    the command is not possible now (no such call, wrong state)
``unavailable``      nothing behind the bridge can do this (not configured)
``refused``          another local refusal
``remote_error``     the platform, a CRM or the network failed
``internal``         a bug in crmphone (logged); the connection stays open
===================  ==================================================================
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, TypeAlias

import attrs

from crmphone.adapters import CallerMatch, CallLog, CrmRecord
from crmphone.errors import (
    ConfigError,
    CrmphoneError,
    InvalidStateError,
    RemoteError,
    UsageError,
)
from crmphone.events import (
    BaseCallEvent,
    CallAlerting,
    ConnectionStateChanged,
    Event,
    MicrophoneLive,
    PersistentConnectionDown,
    PersistentConnectionUp,
    PresenceChanged,
    RoutingStatusChanged,
)

__all__ = [
    "COMMANDS",
    "MAX_FRAME_BYTES",
    "MAX_ID_LENGTH",
    "PROTOCOL",
    "Answer",
    "Command",
    "CommandError",
    "CommandId",
    "CommandRequest",
    "Dial",
    "ErrorCode",
    "Hangup",
    "Hello",
    "Hold",
    "Mute",
    "StopPersistent",
    "agents_message",
    "encode",
    "error_message",
    "event_message",
    "logged_message",
    "parse_command",
    "parse_hello",
    "pop_message",
    "result_message",
    "welcome_message",
]

PROTOCOL: Final = "crmphone.bridge.v1"
"""The protocol version a welcome names; a page that does not know it should not go on."""

MAX_FRAME_BYTES: Final = 64 * 1024
"""The longest frame (UTF-8 bytes) a command or hello may be."""

MAX_ID_LENGTH: Final = 128
"""The longest id (command, conversation, agent, record) in characters."""

_MAX_TOKEN_LENGTH: Final = 512
_MAX_NAME_LENGTH: Final = 256
_MAX_NUMBER_LENGTH: Final = 64
# JavaScript numbers are doubles: beyond 2**53 a page cannot even hold the id it sent.
_MAX_INT_ID: Final = 2**53 - 1

_ID_RE: Final = re.compile(r"[A-Za-z0-9._:-]+")
_ID_RULE: Final = f"1 to {MAX_ID_LENGTH} characters from A-Z a-z 0-9 . _ : -"
_NUMBER_SEPARATORS: Final = str.maketrans("", "", " -.()")
# [0-9], not \d: \d would take Arabic-Indic and other Unicode digits no dialler understands.
_NUMBER_RE: Final = re.compile(r"\+?[0-9]{3,20}")
_NUMBER_RULE: Final = (
    "a phone number: digits with an optional leading +, 3 to 20 digits once spaces, "
    "dashes, dots and parentheses are removed"
)
_CODE_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")


class ErrorCode(enum.StrEnum):
    """The stable ``error.code`` values of failed results (see the module docstring)."""

    TOO_LARGE = "too_large"
    BAD_FRAME = "bad_frame"
    BAD_JSON = "bad_json"
    NOT_OBJECT = "not_object"
    UNKNOWN_TYPE = "unknown_type"
    UNKNOWN_COMMAND = "unknown_command"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    BAD_FIELD = "bad_field"
    BUSY = "busy"
    INVALID_STATE = "invalid_state"
    UNAVAILABLE = "unavailable"
    REFUSED = "refused"
    REMOTE_ERROR = "remote_error"
    INTERNAL = "internal"


CommandId: TypeAlias = int | str
"""A command's id as the page chose it: an integer, or a short string."""


class CommandError(UsageError):
    """A command (or hello) the bridge will not carry out; the page gets it as a failed result.

    ``code`` is an :class:`ErrorCode` value (a command handler may use its own lower-snake-case
    code, such as ``unknown_conversation``); ``command_id`` is the command's id when it could be
    read. Messages name the field and what it allows, never a secret.
    """

    def __init__(
        self, code: ErrorCode | str, message: str, *, command_id: CommandId | None = None
    ) -> None:
        if not _CODE_RE.fullmatch(code):
            raise ValueError(f"an error code is lower snake case, 1 to 64 characters: {code!r}")
        super().__init__(message)
        self.code = str(code)
        self.message = message
        self.command_id = command_id

    @classmethod
    def from_refusal(cls, error: CrmphoneError, command_id: CommandId | None) -> CommandError:
        """The failed result for a crmphone error a command handler raised.

        A :class:`CommandError` keeps its code; :class:`~crmphone.errors.InvalidStateError` is
        ``invalid_state``, :class:`~crmphone.errors.ConfigError` ``unavailable``, any other
        :class:`~crmphone.errors.UsageError` ``refused``, :class:`~crmphone.errors.RemoteError`
        ``remote_error``. crmphone's messages carry no secrets, so they go to the page as they are.
        """
        if isinstance(error, CommandError):
            return cls(error.code, error.message, command_id=command_id)
        code = ErrorCode.INTERNAL
        if isinstance(error, InvalidStateError):
            code = ErrorCode.INVALID_STATE
        elif isinstance(error, ConfigError):
            code = ErrorCode.UNAVAILABLE
        elif isinstance(error, UsageError):
            code = ErrorCode.REFUSED
        elif isinstance(error, RemoteError):
            code = ErrorCode.REMOTE_ERROR
        return cls(code, str(error) or type(error).__name__, command_id=command_id)


# ---------------------------------------------------------------------------------------------
# Field rules, shared by the parser and the command values' validators: one source of truth, so a
# command built in Python obeys exactly what a page's JSON must.


def _describe(value: object) -> str:
    """What a JSON value is, for messages (never the value itself: it may be huge, or a secret)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _check_id(value: object, field: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_ID_LENGTH or not _ID_RE.fullmatch(value):
        got = _describe(value)
        if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH:
            got = "a string with a character outside that set"
        raise CommandError(ErrorCode.BAD_FIELD, f"{field} must be {_ID_RULE} (got {got})")
    return value


def _check_optional_id(value: object, field: str) -> str | None:
    return None if value is None else _check_id(value, field)


def _check_bool(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise CommandError(
            ErrorCode.BAD_FIELD, f"{field} must be true or false (got {_describe(value)})"
        )
    return value


def _check_command_id(value: object) -> CommandId:
    if isinstance(value, int) and not isinstance(value, bool):
        if -_MAX_INT_ID <= value <= _MAX_INT_ID:
            return value
    elif isinstance(value, str) and len(value) <= MAX_ID_LENGTH and _ID_RE.fullmatch(value):
        return value
    raise CommandError(
        ErrorCode.BAD_FIELD,
        f"id must be an integer within ±(2**53 - 1) or a string of {_ID_RULE} "
        f"(got {_describe(value)})",
    )


def _normalise_number(value: object) -> str:
    if isinstance(value, str) and len(value) <= _MAX_NUMBER_LENGTH:
        digits = value.translate(_NUMBER_SEPARATORS)
        if _NUMBER_RE.fullmatch(digits):
            return digits
    raise CommandError(
        ErrorCode.BAD_FIELD, f"number must be {_NUMBER_RULE} (got {_describe(value)})"
    )


def _check_record(value: object) -> CrmRecord | None:
    if value is None:
        return None
    if not isinstance(value, CrmRecord):
        raise CommandError(
            ErrorCode.BAD_FIELD, f"record must be a CRM record (got {_describe(value)})"
        )
    _check_id(value.kind, "record.kind")
    _check_id(value.id, "record.id")
    _check_name(value.name, "record.name")
    return value


def _id_field(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    _check_id(value, attribute.name)


def _optional_id_field(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    _check_optional_id(value, attribute.name)


def _bool_field(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    _check_bool(value, attribute.name)


def _record_field(_instance: object, _attribute: attrs.Attribute[Any], value: object) -> None:
    _check_record(value)


def _command_id_field(_instance: object, _attribute: attrs.Attribute[Any], value: object) -> None:
    _check_command_id(value)


# ---------------------------------------------------------------------------------------------
# Commands


@attrs.frozen
class Answer:
    """Answer the ringing call ``conversation_id``."""

    name: ClassVar[str] = "answer"
    conversation_id: str = attrs.field(validator=_id_field)

    def to_json(self) -> dict[str, Any]:
        """The command's arguments as the page sends them."""
        return {"conversation_id": self.conversation_id}


@attrs.frozen
class Hangup:
    """Hang up (or decline, while ringing) the call ``conversation_id``."""

    name: ClassVar[str] = "hangup"
    conversation_id: str = attrs.field(validator=_id_field)

    def to_json(self) -> dict[str, Any]:
        """The command's arguments as the page sends them."""
        return {"conversation_id": self.conversation_id}


@attrs.frozen
class Mute:
    """Mute (``muted`` true) or unmute the agent's microphone on the call ``conversation_id``."""

    name: ClassVar[str] = "mute"
    conversation_id: str = attrs.field(validator=_id_field)
    muted: bool = attrs.field(validator=_bool_field)

    def to_json(self) -> dict[str, Any]:
        """The command's arguments as the page sends them."""
        return {"conversation_id": self.conversation_id, "muted": self.muted}


@attrs.frozen
class Hold:
    """Put the customer of ``conversation_id`` on hold (``held`` true) or take them off it."""

    name: ClassVar[str] = "hold"
    conversation_id: str = attrs.field(validator=_id_field)
    held: bool = attrs.field(validator=_bool_field)

    def to_json(self) -> dict[str, Any]:
        """The command's arguments as the page sends them."""
        return {"conversation_id": self.conversation_id, "held": self.held}


@attrs.frozen
class Dial:
    """Call ``number`` (click-to-dial); the call's log links to ``record``, the CRM record the
    click came from, when given. ``agent_id`` picks the agent when the bridge serves several.

    ``number`` is normalised: spaces, dashes, dots and parentheses go, so ``"+1 (555) 123-0001"``
    becomes ``"+15551230001"``.
    """

    name: ClassVar[str] = "dial"
    number: str = attrs.field(converter=_normalise_number)
    record: CrmRecord | None = attrs.field(default=None, validator=_record_field)
    agent_id: str | None = attrs.field(default=None, validator=_optional_id_field)

    def to_json(self) -> dict[str, Any]:
        """The command's arguments as the page sends them (absent options left out)."""
        data: dict[str, Any] = {"number": self.number}
        if self.record is not None:
            data["record"] = self.record.to_json()
        if self.agent_id is not None:
            data["agent_id"] = self.agent_id
        return data


@attrs.frozen
class StopPersistent:
    """End the persistent connection now; ``force`` also drops a call riding on it."""

    name: ClassVar[str] = "stop_persistent"
    force: bool = attrs.field(default=False, validator=_bool_field)

    def to_json(self) -> dict[str, Any]:
        """The command's arguments as the page sends them."""
        return {"force": self.force}


Command: TypeAlias = Answer | Hangup | Mute | Hold | Dial | StopPersistent
"""Any command a page may send (match on the class to handle each)."""


@attrs.frozen
class CommandRequest:
    """One command frame: the page's ``id`` for it, and the :data:`Command`."""

    id: CommandId = attrs.field(validator=_command_id_field)
    command: Command

    def to_json(self) -> dict[str, Any]:
        """The frame as a page sends it (:func:`parse_command` reads it back unchanged)."""
        return {"type": "command", "id": self.id, "command": self.command.name} | (
            self.command.to_json()
        )


@attrs.frozen
class Hello:
    """The page's first frame: the install's token and which page it is (``client``)."""

    token: str = attrs.field(repr=False)
    client: str


# ---------------------------------------------------------------------------------------------
# Parsing


class _Fields:
    """The fields of one JSON object, read one by one; fields it does not take are refused up
    front (so the message can list what it does take)."""

    def __init__(
        self,
        data: dict[str, Any],
        *,
        what: str,
        required: tuple[str, ...],
        optional: tuple[str, ...] = (),
        prefix: str = "",
        command_id: CommandId | None = None,
    ) -> None:
        self._data = data
        self._prefix = prefix
        self._command_id = command_id
        allowed = (*required, *optional)
        unknown = sorted(name for name in data if name not in allowed)
        if unknown:
            takes = ", ".join(f"{prefix}{name}" for name in allowed) or "no fields"
            raise CommandError(
                ErrorCode.UNKNOWN_FIELD,
                f"{what} takes {takes} (got unknown field {_short(prefix + unknown[0])})",
                command_id=command_id,
            )
        for name in required:
            if name not in data:
                raise CommandError(
                    ErrorCode.MISSING_FIELD,
                    f"{what} needs the field {prefix}{name}",
                    command_id=command_id,
                )

    def get(self, name: str, check: Callable[[object, str], Any], default: Any = None) -> Any:
        """The field checked by ``check`` (``default`` when absent); errors carry the command id."""
        if name not in self._data:
            return default
        try:
            return check(self._data[name], self._prefix + name)
        except CommandError as exc:
            raise CommandError(exc.code, exc.message, command_id=self._command_id) from None


def _short(text: str) -> str:
    """A page-supplied name, quoted and cut short for a message."""
    return repr(text if len(text) <= 40 else text[:40] + "…")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A repeated key makes two readers disagree on the value (first wins vs last wins).
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {_short(key)} appears twice")
        result[key] = value
    return result


def _load_object(frame: str, what: str) -> dict[str, Any]:
    # A character is at least one UTF-8 byte: long frames are refused before encoding them.
    if (
        len(frame) > MAX_FRAME_BYTES
        or len(frame.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES
    ):
        raise CommandError(
            ErrorCode.TOO_LARGE, f"a {what} frame may be at most {MAX_FRAME_BYTES} bytes"
        )
    try:
        data = json.loads(frame, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    # ValueError covers JSONDecodeError, our hooks, and integers beyond the digit limit;
    # RecursionError a frame of deeply nested arrays, which fits easily in 64 KiB.
    except (ValueError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        if isinstance(exc, RecursionError):
            detail = "nested too deeply"
        raise CommandError(
            ErrorCode.BAD_JSON, f"a {what} frame must be a JSON object ({detail})"
        ) from None
    if not isinstance(data, dict):
        raise CommandError(
            ErrorCode.NOT_OBJECT, f"a {what} frame must be a JSON object (got {_describe(data)})"
        )
    return data


def _parse_record(value: object, field: str) -> CrmRecord:
    if not isinstance(value, dict):
        raise CommandError(
            ErrorCode.BAD_FIELD,
            f"{field} must be an object with kind, id and an optional name (got {_describe(value)})",
        )
    fields = _Fields(
        value, what=field, required=("kind", "id"), optional=("name",), prefix=f"{field}."
    )
    name = fields.get("name", _check_name)
    return CrmRecord(kind=fields.get("kind", _check_id), id=fields.get("id", _check_id), name=name)


def _check_name(value: object, field: str) -> str | None:
    if value is None or (isinstance(value, str) and len(value) <= _MAX_NAME_LENGTH):
        return value
    raise CommandError(
        ErrorCode.BAD_FIELD,
        f"{field} must be null or a string of at most {_MAX_NAME_LENGTH} characters "
        f"(got {_describe(value)})",
    )


def _number(value: object, _field: str) -> str:
    return _normalise_number(value)


_ENVELOPE: Final = ("type", "id", "command")

# The command table: name → (required fields, optional fields, build from the checked fields).
_CONVERSATION: Final = ("conversation_id",)
_COMMAND_TABLE: Final[
    dict[str, tuple[tuple[str, ...], tuple[str, ...], Callable[[_Fields], Command]]]
] = {
    Answer.name: (_CONVERSATION, (), lambda f: Answer(f.get("conversation_id", _check_id))),
    Hangup.name: (_CONVERSATION, (), lambda f: Hangup(f.get("conversation_id", _check_id))),
    Mute.name: (
        (*_CONVERSATION, "muted"),
        (),
        lambda f: Mute(f.get("conversation_id", _check_id), f.get("muted", _check_bool)),
    ),
    Hold.name: (
        (*_CONVERSATION, "held"),
        (),
        lambda f: Hold(f.get("conversation_id", _check_id), f.get("held", _check_bool)),
    ),
    Dial.name: (
        ("number",),
        ("record", "agent_id"),
        lambda f: Dial(
            f.get("number", _number),
            record=f.get("record", _parse_record),
            agent_id=f.get("agent_id", _check_optional_id),
        ),
    ),
    StopPersistent.name: (
        (),
        ("force",),
        lambda f: StopPersistent(f.get("force", _check_bool, False)),
    ),
}

COMMANDS: Final = tuple(sorted(_COMMAND_TABLE))
"""The names of every command, sorted (the welcome lists them)."""


def parse_command(frame: str) -> CommandRequest:
    """Read one command frame from a page (after its hello).

    Raises :class:`CommandError` (and nothing else, whatever ``frame`` holds) for a frame that is
    not a well-formed command; its ``command_id`` is the frame's id when that much was readable.
    """
    data = _load_object(frame, "command")
    command_id: CommandId | None = None
    if "id" in data:
        try:
            command_id = _check_command_id(data["id"])
        except CommandError:
            command_id = None
    kind = data.get("type")
    if kind != "command":
        got = repr(kind) if isinstance(kind, str) and len(kind) <= 40 else _describe(kind)
        hint = " (the hello was already accepted)" if kind == "hello" else ""
        raise CommandError(
            ErrorCode.UNKNOWN_TYPE,
            f"type must be 'command' (got {got}){hint}",
            command_id=command_id,
        )
    if "id" not in data:
        raise CommandError(ErrorCode.MISSING_FIELD, "a command needs the field id")
    request_id = _check_command_id(data["id"])
    name = data.get("command")
    if name is None:
        raise CommandError(
            ErrorCode.MISSING_FIELD,
            f"a command needs the field command (one of {', '.join(COMMANDS)})",
            command_id=request_id,
        )
    if not isinstance(name, str) or name not in _COMMAND_TABLE:
        got = _short(name) if isinstance(name, str) else _describe(name)
        raise CommandError(
            ErrorCode.UNKNOWN_COMMAND,
            f"command must be one of {', '.join(COMMANDS)} (got {got})",
            command_id=request_id,
        )
    required, optional, build = _COMMAND_TABLE[name]
    arguments = {key: value for key, value in data.items() if key not in _ENVELOPE}
    fields = _Fields(
        arguments, what=name, required=required, optional=optional, command_id=request_id
    )
    return CommandRequest(id=request_id, command=build(fields))


def parse_hello(frame: str) -> Hello:
    """Read a page's first frame, which must be its hello.

    Raises :class:`CommandError` (and nothing else) when it is not a well-formed hello. The token
    is only checked for shape here; :func:`crmphone.bridge.security.authenticate` compares it.
    """
    data = _load_object(frame, "hello")
    if data.get("type") != "hello":
        raise CommandError(ErrorCode.UNKNOWN_TYPE, "the first frame must be a hello")
    fields = _Fields(
        {k: v for k, v in data.items() if k != "type"},
        what="hello",
        required=("token", "client"),
        optional=("protocol",),
    )
    token = fields.get("token", _check_token)
    client = fields.get("client", _check_id)
    fields.get("protocol", _check_protocol)
    return Hello(token=token, client=client)


def _check_token(value: object, field: str) -> str:
    if isinstance(value, str) and 0 < len(value) <= _MAX_TOKEN_LENGTH:
        return value
    # Never echo the value: it may be a real token sent to the wrong place.
    raise CommandError(
        ErrorCode.BAD_FIELD,
        f"{field} must be a non-empty string of at most {_MAX_TOKEN_LENGTH} characters",
    )


def _check_protocol(value: object, field: str) -> str:
    if value == PROTOCOL:
        return PROTOCOL
    raise CommandError(ErrorCode.BAD_FIELD, f"{field} must be {PROTOCOL!r} when given")


# ---------------------------------------------------------------------------------------------
# Outgoing messages


def _iso_utc(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        # A naive time's zone would be a guess; crmphone's layers only make aware ones.
        raise ValueError(f"event times must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _plain(value: object) -> Any:
    if isinstance(value, datetime):
        return _iso_utc(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


_EVENT_TYPES: Final = (
    BaseCallEvent,
    PersistentConnectionUp,
    PersistentConnectionDown,
    MicrophoneLive,
    ConnectionStateChanged,
    PresenceChanged,
    RoutingStatusChanged,
)


def event_message(event: Event) -> dict[str, Any]:
    """The message that tells pages about ``event``: ``{"type": "event", "event", "data"}``.

    ``event`` is the event class's stable ``name`` (``call.alerting``, ``phone.microphone_live``,
    ``presence.changed``…); ``data`` holds every field of the event, with datetimes as ISO-8601
    UTC (``2026-01-01T09:30:00Z``) and enums as their values. Call events add their idempotency
    ``key``; an alerting call adds ``customer_number`` and gives ``attributes`` as an object.
    Raises TypeError for anything that is not a crmphone event.
    """
    if not isinstance(event, _EVENT_TYPES):
        raise TypeError(f"not a crmphone event: {type(event).__name__}")
    data = {field.name: _plain(getattr(event, field.name)) for field in attrs.fields(type(event))}
    if isinstance(event, BaseCallEvent):
        data["key"] = event.key
    if isinstance(event, CallAlerting):
        data["attributes"] = dict(event.attributes)
        data["customer_number"] = event.customer_number
    return {"type": "event", "event": type(event).name, "data": data}


def pop_message(
    conversation_id: str,
    match: CallerMatch,
    *,
    agent_id: str | None = None,
    adapter: str | None = None,
) -> dict[str, Any]:
    """The screen-pop instruction for the call ``conversation_id``: which record(s) to show.

    ``outcome`` is ``one`` (open that record), ``many`` (a search page; the first record is the one
    the log links to) or ``none`` (a new-record form with ``number``, or nothing). ``adapter``
    names the CRM whose records these are (added to the message when given).
    """
    return {
        "type": "pop",
        **({} if adapter is None else {"adapter": adapter}),
        "call": conversation_id,
        "agent_id": agent_id,
        "outcome": match.outcome.value,
        "records": [record.to_json() for record in match.records],
        "number": match.number,
    }


def agents_message(agents: Mapping[str, str]) -> dict[str, Any]:
    """The roster of agents the pages may show: agent id → display name (replaces the last)."""
    return {"type": "agents", "agents": [{"id": id_, "name": name} for id_, name in agents.items()]}


def logged_message(adapter: str, log: CallLog, at: datetime) -> dict[str, Any]:
    """``adapter`` wrote ``log`` into its CRM at ``at``: what the dashboard lists as "just
    written" (the record is the one the log links to, when known)."""
    record = log.record
    return {
        "type": "logged",
        "adapter": adapter,
        "call": log.conversation_id,
        "agent_id": log.agent_id,
        "stage": log.stage.name.lower(),
        "direction": log.direction.value,
        "number": log.customer_number,
        "caller_name": log.caller_name,
        "record": None if record is None else record.to_json(),
        "at": _iso_utc(at),
    }


def welcome_message(client: str, session: str) -> dict[str, Any]:
    """The answer to an accepted hello: the protocol version and what the page may send."""
    return {
        "type": "welcome",
        "protocol": PROTOCOL,
        "client": client,
        "session": session,
        "commands": list(COMMANDS),
        "max_frame": MAX_FRAME_BYTES,
    }


def result_message(command_id: CommandId, data: Mapping[str, Any]) -> dict[str, Any]:
    """The successful result of the command ``command_id``."""
    return {"type": "result", "id": command_id, "ok": True, "data": dict(data)}


def error_message(command_id: CommandId | None, error: CommandError) -> dict[str, Any]:
    """The failed result of the command ``command_id`` (None: the frame was unreadable)."""
    return {
        "type": "result",
        "id": command_id,
        "ok": False,
        "error": {"code": error.code, "message": error.message},
    }


def encode(message: Mapping[str, Any]) -> str:
    """One message as a compact JSON text frame.

    Raises :class:`~crmphone.errors.UsageError` when ``message`` holds something JSON cannot say
    (a non-string key, NaN, an object): a bug in whoever built it.
    """
    try:
        # ASCII escapes: a page's JSON may smuggle lone surrogates (\\ud800) into names, and a
        # frame holding one raw could not be encoded as UTF-8 at all.
        return json.dumps(message, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"a bridge message must be plain JSON data: {exc}") from exc
