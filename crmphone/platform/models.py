"""The platform's JSON as frozen values.

Every payload from Genesys Cloud (REST bodies and, for conversations, notification ``eventBody``\\s
of the same shape) enters crmphone through a ``from_genesys`` named constructor here. The
constructors check the fields crmphone relies on, ignore keys they do not know (the platform adds
fields often), turn ISO-8601 strings into aware UTC datetimes, and raise
:class:`~crmphone.errors.PlatformError` naming the offending field when a payload is malformed —
never ``KeyError`` or ``TypeError``. Nothing downstream parses a dict.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import attrs

from crmphone.errors import PlatformError

__all__ = [
    "CallConversation",
    "Channel",
    "Participant",
    "PresenceDefinition",
    "Station",
    "TopicSubscription",
    "User",
    "UserPresence",
    "UserRoutingStatus",
    "Wrapup",
    "normalise_system_presence",
    "parse_genesys_datetime",
]

_T = TypeVar("_T")


def parse_genesys_datetime(text: str) -> datetime:
    """Parse a Genesys ISO-8601 timestamp (``2024-05-01T12:00:00.123Z``) as an aware UTC datetime.

    Offsets other than ``Z`` are converted to UTC; a timestamp without an offset is taken as UTC,
    which is what the platform documents for every date it sends. Raises ``ValueError`` when the
    text is not ISO-8601 or names an instant outside the representable range.
    """
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00 falls before year 1 in UTC
        raise ValueError(f"{text!r} is outside the representable range of dates") from exc


def _optional(data: object, key: str, build: Callable[[object], _T]) -> _T | None:
    """``build(data[key])`` when the (already checked) object has ``key``, else None."""
    assert isinstance(data, Mapping)
    value = data.get(key)
    return None if value is None else build(value)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


class _Fields:
    """Typed access to one JSON object, with errors that name the payload and the field path."""

    def __init__(self, data: object, kind: str, path: str = "") -> None:
        if not isinstance(data, Mapping):
            where = f"{path!r} " if path else ""
            raise PlatformError(
                f"malformed {kind} from the platform: {where}must be a JSON object, "
                f"got {_type_name(data)}"
            )
        self._data: Mapping[str, Any] = data
        self._kind = kind
        self._path = path

    def _where(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def _fail(self, key: str, expected: str, value: object) -> PlatformError:
        return PlatformError(
            f"malformed {self._kind} from the platform: field {self._where(key)!r} must be "
            f"{expected}, got {_type_name(value)}"
        )

    def _get(
        self, key: str, expected_type: type[_T], expected: str, *, required: bool
    ) -> _T | None:
        value = self._data.get(key)
        if value is None:
            if required:
                raise PlatformError(
                    f"malformed {self._kind} from the platform: required field "
                    f"{self._where(key)!r} is missing"
                )
            return None
        # bool is an int in Python; the platform's numbers are never booleans.
        if not isinstance(value, expected_type) or (
            expected_type is int and isinstance(value, bool)
        ):
            raise self._fail(key, expected, value)
        return value

    def text(self, key: str) -> str:
        value = self._get(key, str, "a non-empty string", required=True)
        assert value is not None
        if not value:
            raise self._fail(key, "a non-empty string", value)
        return value

    def optional_text(self, key: str) -> str | None:
        return self._get(key, str, "a string", required=False)

    def flag(self, key: str) -> bool:
        return bool(self._get(key, bool, "true or false", required=False))

    def optional_int(self, key: str) -> int | None:
        return self._get(key, int, "an integer", required=False)

    def optional_datetime(self, key: str) -> datetime | None:
        value = self._get(key, str, "an ISO-8601 date-time string", required=False)
        if value is None:
            return None
        try:
            return parse_genesys_datetime(value)
        except ValueError as exc:
            raise PlatformError(
                f"malformed {self._kind} from the platform: field {self._where(key)!r} is not an "
                f"ISO-8601 date-time ({value[:40]!r})"
            ) from exc

    def optional_object(self, key: str) -> _Fields | None:
        value = self._data.get(key)
        if value is None:
            return None
        return _Fields(value, self._kind, self._where(key))

    def optional_id_of(self, key: str) -> str | None:
        """The ``id`` inside a nested reference such as ``"user": {"id": …, "selfUri": …}``."""
        reference = self.optional_object(key)
        return None if reference is None else reference.optional_text("id")

    def items(self, key: str, *, required: bool) -> list[object]:
        value = self._get(key, list, "a JSON array", required=required)
        return [] if value is None else value

    def texts(self, key: str) -> tuple[str, ...]:
        values = self.items(key, required=False)
        for index, value in enumerate(values):
            if not isinstance(value, str):
                raise self._fail(f"{key}[{index}]", "a string", value)
        return tuple(str(value) for value in values)

    def string_pairs(self, key: str) -> tuple[tuple[str, str], ...]:
        """A JSON object of string values (``attributes``) as sorted ``(key, value)`` pairs."""
        nested = self.optional_object(key)
        if nested is None:
            return ()
        pairs = []
        for name, value in nested._data.items():
            if not isinstance(value, str):
                raise nested._fail(str(name), "a string", value)
            pairs.append((str(name), value))
        return tuple(sorted(pairs))


@attrs.frozen
class Channel:
    """A notification channel: where to open the WebSocket, and until when it lives.

    ``connect_uri`` is the ``wss://`` (sandbox: ``ws://``) URL carrying no token — the channel is
    bound to the token that created it. ``expires`` is ``None`` when the platform did not say.
    """

    id: str
    connect_uri: str
    expires: datetime | None = None

    @classmethod
    def from_genesys(cls, data: object) -> Channel:
        """Build from a ``POST/GET /api/v2/notifications/channels`` entity."""
        fields = _Fields(data, "channel")
        connect_uri = fields.text("connectUri")
        if not connect_uri.startswith(("wss://", "ws://")):
            raise PlatformError(
                "malformed channel from the platform: field 'connectUri' must be a ws:// or "
                f"wss:// URL, got {connect_uri[:60]!r}"
            )
        return cls(
            id=fields.text("id"),
            connect_uri=connect_uri,
            expires=fields.optional_datetime("expires"),
        )


@attrs.frozen
class TopicSubscription:
    """One topic of a channel's subscription list, as the platform reports it.

    ``state`` is ``"Permitted"`` or ``"Rejected"`` when the request asked for ``ignoreErrors``
    (otherwise ``None``); a rejected topic carries the platform's ``rejection_reason`` and the
    ``missing_permissions`` that would allow it.
    """

    id: str
    state: str | None = None
    rejection_reason: str | None = None
    missing_permissions: tuple[str, ...] = ()

    @property
    def rejected(self) -> bool:
        """Whether the platform refused this topic (it will deliver no events for it)."""
        return self.state is not None and self.state.lower() == "rejected"

    @classmethod
    def from_genesys(cls, data: object) -> TopicSubscription:
        """Build from one entity of a ``…/channels/{id}/subscriptions`` response."""
        fields = _Fields(data, "topic subscription")
        return cls(
            id=fields.text("id"),
            state=fields.optional_text("state"),
            rejection_reason=fields.optional_text("rejectionReason"),
            missing_permissions=fields.texts("missingPermissions"),
        )


@attrs.frozen
class User:
    """A platform user (an agent).

    ``station_id`` is the user's effective station (the one calls ring on) when the payload was
    fetched with ``expand=station``, else ``None``. ``permissions`` are filled when it was fetched
    with ``expand=authorization`` (empty otherwise), ``presence`` and ``routing_status`` with
    ``expand=presence,routingStatus``.
    """

    id: str
    name: str | None = None
    email: str | None = None
    state: str | None = None
    station_id: str | None = None
    permissions: tuple[str, ...] = ()
    presence: UserPresence | None = None
    routing_status: UserRoutingStatus | None = None

    @classmethod
    def from_genesys(cls, data: object) -> User:
        """Build from a ``GET /api/v2/users`` entity or ``GET /api/v2/users/me?expand=station``."""
        fields = _Fields(data, "user")
        station_id = None
        stations = fields.optional_object("station")
        if stations is not None:
            # effectiveStation is where calls go now; associatedStation is the same when the
            # agent picked one, and is the best remaining guess when effective is absent.
            station_id = stations.optional_id_of("effectiveStation") or stations.optional_id_of(
                "associatedStation"
            )
        authorization = fields.optional_object("authorization")
        return cls(
            id=fields.text("id"),
            name=fields.optional_text("name"),
            email=fields.optional_text("email"),
            state=fields.optional_text("state"),
            station_id=station_id,
            permissions=authorization.texts("permissions") if authorization is not None else (),
            presence=_optional(data, "presence", UserPresence.from_genesys),
            routing_status=_optional(data, "routingStatus", UserRoutingStatus.from_genesys),
        )


@attrs.frozen
class Station:
    """A phone station; ``web_rtc_persistent_enabled`` is "Maintain a persistent connection"."""

    id: str
    name: str | None = None
    type: str | None = None
    web_rtc_persistent_enabled: bool = False

    @classmethod
    def from_genesys(cls, data: object) -> Station:
        """Build from a ``GET /api/v2/stations/{id}`` body."""
        fields = _Fields(data, "station")
        return cls(
            id=fields.text("id"),
            name=fields.optional_text("name"),
            type=fields.optional_text("type"),
            web_rtc_persistent_enabled=fields.flag("webRtcPersistentEnabled"),
        )


def normalise_system_presence(value: str) -> str:
    """A system presence in upper snake case: ``"On Queue"``, ``"OnQueue"`` and ``"ON_QUEUE"``
    → ``"ON_QUEUE"``.

    The platform writes one system presence three ways: display words in the older presence
    definitions and in user presences, camel case in the newer definitions API, upper snake case
    in analytics. crmphone compares them in one form.
    """
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", value.strip()).replace("-", " ")
    return "_".join(spaced.upper().split())


@attrs.frozen
class UserPresence:
    """A user's presence: the system presence (upper snake case, see
    :func:`normalise_system_presence`), the presence definition chosen, the status message, and
    when it was set."""

    system_presence: str
    presence_id: str | None = None
    message: str = ""
    modified_at: datetime | None = None
    source: str | None = None

    @classmethod
    def from_genesys(cls, data: object) -> UserPresence:
        """Build from ``GET /api/v2/users/{id}/presences/{source}`` or a ``v2.users.{id}.presence``
        event body (the same shape)."""
        fields = _Fields(data, "presence")
        definition = fields.optional_object("presenceDefinition")
        if definition is None:
            raise PlatformError(
                "malformed presence from the platform: required field 'presenceDefinition' is "
                "missing"
            )
        system = normalise_system_presence(definition.text("systemPresence"))
        if not system:
            raise definition._fail("systemPresence", "a system presence name", "")
        return cls(
            system_presence=system,
            presence_id=definition.optional_text("id"),
            message=fields.optional_text("message") or "",
            modified_at=fields.optional_datetime("modifiedDate"),
            source=fields.optional_text("source"),
        )


@attrs.frozen
class PresenceDefinition:
    """A presence an agent can choose: its id, system presence (upper snake case), display label
    and whether it is the system's own (``primary``) rather than one the organisation added."""

    id: str
    system_presence: str
    label: str | None = None
    primary: bool = False

    @classmethod
    def from_genesys(cls, data: object) -> PresenceDefinition:
        """Build from a ``GET /api/v2/presence/definitions`` entity."""
        fields = _Fields(data, "presence definition")
        labels = fields.string_pairs("languageLabels")
        return cls(
            id=fields.text("id"),
            system_presence=normalise_system_presence(fields.text("systemPresence")),
            label=dict(labels).get("en_US") or (labels[0][1] if labels else None),
            primary=fields.flag("primary"),
        )


@attrs.frozen
class UserRoutingStatus:
    """A user's routing status (``OFF_QUEUE``, ``IDLE``, ``INTERACTING``, ``NOT_RESPONDING``,
    ``COMMUNICATING``) and when it began."""

    status: str
    started_at: datetime | None = None

    @classmethod
    def from_genesys(cls, data: object) -> UserRoutingStatus:
        """Build from ``GET /api/v2/users/{id}/routingstatus`` (``{"status", "startTime"}``) or a
        ``v2.users.{id}.routingStatus`` event body (the same inside ``"routingStatus"``)."""
        fields = _Fields(data, "routing status")
        nested = fields.optional_object("routingStatus")
        if nested is not None:
            fields = nested
        return cls(
            status=fields.text("status").upper(), started_at=fields.optional_datetime("startTime")
        )


@attrs.frozen
class Wrapup:
    """The after-call work an agent recorded: wrap-up code, notes and time spent."""

    code: str | None = None
    notes: str | None = None
    duration_seconds: int | None = None

    @classmethod
    def _from_fields(cls, fields: _Fields) -> Wrapup:
        return cls(
            code=fields.optional_text("code"),
            notes=fields.optional_text("notes"),
            duration_seconds=fields.optional_int("durationSeconds"),
        )


@attrs.frozen
class Participant:
    """One participant of a call conversation, in the platform's vocabulary.

    ``state`` is the platform's word (``alerting``, ``contacting``, ``dialing``, ``connected``,
    ``disconnected``, ``terminated``, …), kept as text because the platform adds states; the call
    state machine maps it to its own enum. ``attributes`` are the participant data as sorted
    ``(key, value)`` pairs (see :meth:`attribute`).
    """

    id: str
    purpose: str
    state: str
    initial_state: str | None = None
    direction: str | None = None
    ani: str | None = None
    dnis: str | None = None
    address: str | None = None
    name: str | None = None
    user_id: str | None = None
    queue_id: str | None = None
    start_time: datetime | None = None
    connected_time: datetime | None = None
    end_time: datetime | None = None
    disconnect_type: str | None = None
    held: bool = False
    muted: bool = False
    recording: bool = False
    wrapup_required: bool = False
    wrapup: Wrapup | None = None
    alerting_timeout_ms: int | None = None
    attributes: tuple[tuple[str, str], ...] = ()

    def attribute(self, key: str) -> str | None:
        """The participant-data value under ``key``, or ``None``."""
        for name, value in self.attributes:
            if name == key:
                return value
        return None

    @classmethod
    def from_genesys(cls, data: object, *, path: str = "participant") -> Participant:
        """Build from one element of a conversation's ``participants`` array."""
        fields = _Fields(data, "call conversation", path)
        return cls._from_fields(fields)

    @classmethod
    def _from_fields(cls, fields: _Fields) -> Participant:
        wrapup = fields.optional_object("wrapup")
        return cls(
            id=fields.text("id"),
            purpose=fields.text("purpose"),
            state=fields.text("state"),
            initial_state=fields.optional_text("initialState"),
            direction=fields.optional_text("direction"),
            ani=fields.optional_text("ani"),
            dnis=fields.optional_text("dnis"),
            address=fields.optional_text("address"),
            name=fields.optional_text("name"),
            user_id=fields.optional_id_of("user"),
            queue_id=fields.optional_id_of("queue"),
            start_time=fields.optional_datetime("startTime"),
            connected_time=fields.optional_datetime("connectedTime"),
            end_time=fields.optional_datetime("endTime"),
            disconnect_type=fields.optional_text("disconnectType"),
            held=fields.flag("held"),
            muted=fields.flag("muted"),
            recording=fields.flag("recording"),
            wrapup_required=fields.flag("wrapupRequired"),
            wrapup=None if wrapup is None else Wrapup._from_fields(wrapup),
            alerting_timeout_ms=fields.optional_int("alertingTimeoutMs"),
            attributes=fields.string_pairs("attributes"),
        )


@attrs.frozen
class CallConversation:
    """A call conversation and its participants, in the platform's order.

    Built from the ``GET /api/v2/conversations/calls/{id}`` body and from the eventBody of
    ``v2.users.{id}.conversations.calls`` notifications, which share this shape.
    """

    id: str
    participants: tuple[Participant, ...] = ()

    def participant(self, participant_id: str) -> Participant | None:
        """The participant with ``participant_id``, or ``None``."""
        for candidate in self.participants:
            if candidate.id == participant_id:
                return candidate
        return None

    @classmethod
    def from_genesys(cls, data: object) -> CallConversation:
        """Build from a call conversation REST body or a conversations.calls eventBody."""
        fields = _Fields(data, "call conversation")
        participants = tuple(
            Participant._from_fields(_Fields(item, "call conversation", f"participants[{index}]"))
            for index, item in enumerate(fields.items("participants", required=False))
        )
        return cls(id=fields.text("id"), participants=participants)
