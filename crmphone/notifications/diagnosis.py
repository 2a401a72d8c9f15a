"""Why did my channel close? Facts about a closed socket in, a likely cause and an explanation out.

The channel layer collects :class:`CloseFacts` when a socket of a notification channel closes (close
code and reason, who closed it, when frames and heartbeats last came, the token's and the channel's
lifetimes, system notices, a ``HEAD`` on the channel afterwards) and calls :func:`diagnose`. The
resulting :class:`CloseDiagnosis` goes to the log (:meth:`~CloseDiagnosis.one_line`), to
``crmphone events --explain`` (:meth:`~CloseDiagnosis.render`, :meth:`~CloseDiagnosis.to_dict`).

The rules, first match wins. Explicit statements beat inference: what the platform told us in a
system notice, then what we did ourselves, then what the close frame says, then what the clocks
imply, then what a ``HEAD`` after the close shows, and last what silence suggests.

====  ======================  ==========================================================================
 #    cause                   matches when
====  ======================  ==========================================================================
 1    TOKEN_REVOKED           a ``v2.system.token_revoked`` notice arrived on this socket
 2    NO_LONGER_SUBSCRIBED    a ``v2.system.no_longer_subscribed`` notice arrived on this socket
 3    MAINTENANCE             a ``v2.system.socket_closing`` notice arrived on this socket
 4    CLIENT_CLOSED           we closed it, and not because the liveness check failed
 5    SERVER_ERROR            close code 1011/1012/1013/1014, or reconnecting met an HTTP 5xx
 6    DISPLACED               the close reason says another connection took over the channel
 7    CHANNEL_EXPIRED         the close came at or after the channel's expiry (and before the token's)
 8    TOKEN_EXPIRED           the close came at or after the token's expiry
 9    EVICTED                 a ``HEAD`` after the close found the channel gone though nothing expired
 10   NETWORK_SILENCE         the liveness check failed, or the connection died without a close frame
 11   IDLE_TIMEOUT            close code 1001 and nothing above explains it
 12   UNKNOWN                 anything else
====  ======================  ==========================================================================

Why 1001 ranks so low: Genesys Cloud closes with 1001 "idle timeout" for several reasons (the 24 h
channel lifetime, an expired token, the 20-channel limit), so the code itself tells little; the
lifetimes and the ``HEAD`` say which one it was. ``clock_skew_allowance`` widens the expiry
comparisons because the platform's clock and ours differ a little.

A diagnosis never contains a token value: :class:`CloseFacts` has no field that could hold one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final, TypeAlias

import attrs

from crmphone.notifications.messages import NoLongerSubscribed, TokenRevoked

__all__ = [
    "CHANNEL_LIFETIME",
    "CloseAges",
    "CloseDiagnosis",
    "CloseFacts",
    "ClosedBy",
    "JSONValue",
    "LikelyCause",
    "SystemMessage",
    "diagnose",
]

JSONValue: TypeAlias = str | int | float | bool | list["JSONValue"] | dict[str, "JSONValue"] | None

CHANNEL_LIFETIME: Final = timedelta(hours=24)
"""How long a Genesys Cloud channel lives; used when the channel's ``expires`` is unknown."""

_SERVER_ERROR_CODES: Final = frozenset({1011, 1012, 1013, 1014})
_GOING_AWAY: Final = 1001
_DISPLACED_WORDS: Final = (
    "displaced",
    "another connection",
    "another websocket",
    "new connection",
    "newer connection",
    "replaced",
    "superseded",
)
_TOKEN_REVOKED_TOPIC: Final = "v2.system.token_revoked"  # noqa: S105 - a topic name
_NO_LONGER_SUBSCRIBED_TOPIC: Final = "v2.system.no_longer_subscribed"
_CLOSE_CODE_NAMES: Final = {
    1000: "normal closure",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status received",
    1006: "abnormal closure",
    1007: "invalid frame payload",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake failure",
}


class ClosedBy(enum.StrEnum):
    """Who ended the connection: the server or we sent a close frame, or none came (network)."""

    SERVER = "server"
    CLIENT = "client"
    NETWORK = "network"


class LikelyCause(enum.Enum):
    """The likely reason a channel socket closed; :attr:`summary` and :attr:`remedy` explain it."""

    MAINTENANCE = "maintenance"
    CHANNEL_EXPIRED = "channel_expired"
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 - a cause's name, not a secret
    TOKEN_REVOKED = "token_revoked"  # noqa: S105 - a cause's name, not a secret
    NO_LONGER_SUBSCRIBED = "no_longer_subscribed"
    EVICTED = "evicted"
    DISPLACED = "displaced"
    NETWORK_SILENCE = "network_silence"
    SERVER_ERROR = "server_error"
    IDLE_TIMEOUT = "idle_timeout"
    CLIENT_CLOSED = "client_closed"
    UNKNOWN = "unknown"

    @property
    def summary(self) -> str:
        """One line for a human: what this cause means."""
        return _CAUSE_TEXT[self][0]

    @property
    def remedy(self) -> str:
        """What crmphone does about it (and what, if anything, the user should check)."""
        return _CAUSE_TEXT[self][1]


_CAUSE_TEXT: Final[dict[LikelyCause, tuple[str, str]]] = {
    LikelyCause.MAINTENANCE: (
        (
            "The platform announced maintenance on this socket (v2.system.socket_closing) and "
            "closed it."
        ),
        (
            "crmphone moves to a new socket as soon as the notice arrives and drops the events both "
            "sockets deliver, so nothing is lost"
        ),
    ),
    LikelyCause.CHANNEL_EXPIRED: (
        "The channel reached the end of its lifetime (24 h on Genesys Cloud).",
        "crmphone opens a new channel and resubscribes before the old one expires",
    ),
    LikelyCause.TOKEN_EXPIRED: (
        "The access token the channel was created with expired.",
        (
            "crmphone refreshes the token before it expires and moves to a channel created with "
            "the new one"
        ),
    ),
    LikelyCause.TOKEN_REVOKED: (
        "The platform revoked the access token behind the channel (v2.system.token_revoked).",
        (
            "crmphone gets a new token, creates a new channel and resubscribes; if the credentials "
            "themselves were revoked it stops with an authentication error"
        ),
    ),
    LikelyCause.NO_LONGER_SUBSCRIBED: (
        (
            "The channel lost its subscriptions (v2.system.no_longer_subscribed): another channel "
            "took the topics, or the user's tokens were revoked."
        ),
        (
            "crmphone gets a fresh token and channel and resubscribes; if it keeps happening, "
            "another program is subscribing with the same user or OAuth client"
        ),
    ),
    LikelyCause.EVICTED: (
        (
            "The channel no longer exists though neither it nor the token expired: a 21st channel "
            "for the same user or OAuth client evicted it (or someone deleted it)."
        ),
        (
            "crmphone creates a new channel and resubscribes; if it keeps happening, other programs "
            "create channels with the same user or OAuth client"
        ),
    ),
    LikelyCause.DISPLACED: (
        "Another WebSocket connected to the same channel and displaced this one.",
        (
            "crmphone creates a new channel so the two connections stop displacing each other; "
            "check for a second connector sharing the channel"
        ),
    ),
    LikelyCause.NETWORK_SILENCE: (
        (
            "The connection went silent or died without a close frame (no heartbeat, ping "
            "unanswered, or the TCP connection dropped)."
        ),
        (
            "crmphone reconnects with backoff and re-reads live calls over REST before it emits "
            "events again"
        ),
    ),
    LikelyCause.SERVER_ERROR: (
        "The platform failed (close code 1011-1014, or HTTP 5xx when reconnecting).",
        (
            "crmphone reconnects with backoff, honouring Retry-After, and re-reads live calls over "
            "REST"
        ),
    ),
    LikelyCause.IDLE_TIMEOUT: (
        (
            "The server closed with 1001 (Genesys Cloud's 'idle timeout'), and neither the channel "
            "nor the token had expired nor was the channel found gone."
        ),
        "crmphone reconnects at once, to the same channel first, and re-reads live calls over REST",
    ),
    LikelyCause.CLIENT_CLOSED: (
        "crmphone closed the socket itself (rollover to a new socket, or shutdown).",
        "nothing to repair: it was deliberate",
    ),
    LikelyCause.UNKNOWN: (
        "The facts match no known cause.",
        (
            "crmphone reconnects with backoff; the close code, reason and ages below are what to "
            "report"
        ),
    ),
}


def _utc_or_none(value: datetime | None) -> datetime | None:
    """attrs converter: aware datetimes to UTC; naive ones are refused (their zone is a guess)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"datetime {value.isoformat()} has no time zone; pass an aware datetime")
    return value.astimezone(UTC)


def _utc(value: datetime) -> datetime:
    """attrs converter for required datetimes; see :func:`_utc_or_none`."""
    converted = _utc_or_none(value)
    if converted is None:
        raise TypeError("expected a datetime, not None")
    return converted


@attrs.frozen
class SystemMessage:
    """A system notice that arrived on the socket: its topic and the reason it gave, if any."""

    topic: str
    reason: str | None = None

    @classmethod
    def from_message(cls, message: NoLongerSubscribed | TokenRevoked) -> SystemMessage:
        """Keep what diagnosis needs from a parsed notice."""
        if isinstance(message, NoLongerSubscribed):
            return cls(message.topic_name, message.reason)
        return cls(message.topic_name, None)

    @property
    def is_token_revoked(self) -> bool:
        """True for ``v2.system.token_revoked`` (with or without an id)."""
        return _in_family(self.topic, _TOKEN_REVOKED_TOPIC)

    @property
    def is_no_longer_subscribed(self) -> bool:
        """True for ``v2.system.no_longer_subscribed`` (with or without an id)."""
        return _in_family(self.topic, _NO_LONGER_SUBSCRIBED_TOPIC)


def _in_family(topic: str, base: str) -> bool:
    """Return whether ``topic`` is ``base`` or ``base.<id>``."""
    return topic == base or topic.startswith(base + ".")


@attrs.frozen(kw_only=True)
class CloseFacts:
    """What was known when a channel socket closed. All datetimes are aware UTC wall times.

    ``at``: when the socket closed. ``closed_by``: who sent the close frame, or ``"network"``
    when none came. ``last_frame_at`` / ``last_heartbeat_at`` / ``socket_opened_at``: wall times
    of this socket's last frame, last heartbeat and opening. ``channel_created_at`` /
    ``channel_expires``: the channel's lifetime (``expires`` as the platform reported it).
    ``token_issued_at`` / ``token_expires_at``: the lifetime of the token the channel was created
    with (never the token itself). ``socket_closing_at``: when a maintenance notice arrived.
    ``system_message``: the last ``no_longer_subscribed`` / ``token_revoked`` notice.
    ``liveness_failed``: our ping went unanswered. ``channel_exists_after``: what a ``HEAD`` on
    the channel answered after the close (None when not checked). ``reconnect_http_status``: the
    HTTP status reconnecting met, if it failed with one. ``clock_skew_allowance``: how far the
    platform's clock may differ from ours.
    """

    channel_id: str
    close_code: int | None
    close_reason: str | None
    closed_by: ClosedBy = attrs.field(converter=ClosedBy)
    at: datetime = attrs.field(converter=_utc)
    last_frame_at: datetime | None = attrs.field(default=None, converter=_utc_or_none)
    last_heartbeat_at: datetime | None = attrs.field(default=None, converter=_utc_or_none)
    socket_opened_at: datetime | None = attrs.field(default=None, converter=_utc_or_none)
    channel_created_at: datetime | None = attrs.field(default=None, converter=_utc_or_none)
    channel_expires: datetime | None = attrs.field(default=None, converter=_utc_or_none)
    token_issued_at: datetime | None = attrs.field(default=None, converter=_utc_or_none)
    token_expires_at: datetime | None = attrs.field(default=None, converter=_utc_or_none)
    socket_closing_at: datetime | None = attrs.field(default=None, converter=_utc_or_none)
    system_message: SystemMessage | None = None
    liveness_failed: bool = False
    channel_exists_after: bool | None = None
    reconnect_http_status: int | None = None
    clock_skew_allowance: timedelta = timedelta(seconds=5)

    @property
    def channel_deadline(self) -> datetime | None:
        """When the channel expires: ``channel_expires``, else 24 h after creation, else None."""
        if self.channel_expires is not None:
            return self.channel_expires
        if self.channel_created_at is not None:
            return self.channel_created_at + CHANNEL_LIFETIME
        return None


def _since(at: datetime, then: datetime | None) -> timedelta | None:
    return None if then is None else at - then


def _until(at: datetime, then: datetime | None) -> timedelta | None:
    return None if then is None else then - at


@attrs.frozen(kw_only=True)
class CloseAges:
    """Ages and remaining lifetimes at the moment of the close (None where a fact is unknown).

    A negative remaining lifetime means it had already run out.
    """

    socket_age: timedelta | None = None
    last_frame_age: timedelta | None = None
    last_heartbeat_age: timedelta | None = None
    token_age: timedelta | None = None
    token_remaining: timedelta | None = None
    channel_age: timedelta | None = None
    channel_remaining: timedelta | None = None

    @classmethod
    def at_close(cls, facts: CloseFacts) -> CloseAges:
        """Compute the ages from ``facts`` at ``facts.at``."""
        at = facts.at
        return cls(
            socket_age=_since(at, facts.socket_opened_at),
            last_frame_age=_since(at, facts.last_frame_at),
            last_heartbeat_age=_since(at, facts.last_heartbeat_at),
            token_age=_since(at, facts.token_issued_at),
            token_remaining=_until(at, facts.token_expires_at),
            channel_age=_since(at, facts.channel_created_at),
            channel_remaining=_until(at, facts.channel_deadline),
        )


# -- the rules ------------------------------------------------------------------------------------


def _reason_text(facts: CloseFacts) -> str:
    return (facts.close_reason or "").lower()


def _token_revoked(facts: CloseFacts) -> bool:
    return facts.system_message is not None and facts.system_message.is_token_revoked


def _no_longer_subscribed(facts: CloseFacts) -> bool:
    return facts.system_message is not None and facts.system_message.is_no_longer_subscribed


def _maintenance(facts: CloseFacts) -> bool:
    return facts.socket_closing_at is not None


def _client_closed(facts: CloseFacts) -> bool:
    return facts.closed_by is ClosedBy.CLIENT and not facts.liveness_failed


def _server_error(facts: CloseFacts) -> bool:
    status = facts.reconnect_http_status
    return facts.close_code in _SERVER_ERROR_CODES or (status is not None and 500 <= status < 600)


def _displaced(facts: CloseFacts) -> bool:
    reason = _reason_text(facts)
    return facts.closed_by is ClosedBy.SERVER and any(w in reason for w in _DISPLACED_WORDS)


def _expired(at: datetime, deadline: datetime | None, skew: timedelta) -> bool:
    return deadline is not None and at >= deadline - skew


def _channel_expired(facts: CloseFacts) -> bool:
    skew = facts.clock_skew_allowance
    channel_deadline = facts.channel_deadline
    if not _expired(facts.at, channel_deadline, skew):
        return False
    # When both ran out, the one that ran out first closed the channel.
    token_deadline = facts.token_expires_at
    return (
        token_deadline is None
        or channel_deadline is None
        or not _expired(facts.at, token_deadline, skew)
        or channel_deadline <= token_deadline
    )


def _token_expired(facts: CloseFacts) -> bool:
    return _expired(facts.at, facts.token_expires_at, facts.clock_skew_allowance)


def _evicted(facts: CloseFacts) -> bool:
    return facts.channel_exists_after is False


def _network_silence(facts: CloseFacts) -> bool:
    return facts.liveness_failed or facts.closed_by is ClosedBy.NETWORK


def _going_away(facts: CloseFacts) -> bool:
    return facts.close_code == _GOING_AWAY


def _always(facts: CloseFacts) -> bool:
    return True


_RULES: Final[tuple[tuple[LikelyCause, Callable[[CloseFacts], bool]], ...]] = (
    # The platform's own notices name the cause; they outrank every inference.
    (LikelyCause.TOKEN_REVOKED, _token_revoked),
    (LikelyCause.NO_LONGER_SUBSCRIBED, _no_longer_subscribed),
    (LikelyCause.MAINTENANCE, _maintenance),
    # We know why we closed a socket ourselves (unless our watchdog made us).
    (LikelyCause.CLIENT_CLOSED, _client_closed),
    # The close frame's code and reason are the server's word.
    (LikelyCause.SERVER_ERROR, _server_error),
    (LikelyCause.DISPLACED, _displaced),
    # Lifetimes: exact deadlines we were told, compared with a clock-skew allowance.
    (LikelyCause.CHANNEL_EXPIRED, _channel_expired),
    (LikelyCause.TOKEN_EXPIRED, _token_expired),
    # A channel gone without expiring was evicted; checked after expiry, which also removes it.
    (LikelyCause.EVICTED, _evicted),
    # Silence says the path broke, not why; weaker than everything above.
    (LikelyCause.NETWORK_SILENCE, _network_silence),
    # 1001 is the platform's catch-all "idle timeout"; only when nothing more specific fits.
    (LikelyCause.IDLE_TIMEOUT, _going_away),
    (LikelyCause.UNKNOWN, _always),
)


# -- formatting -----------------------------------------------------------------------------------


def _timestamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(value: timedelta) -> str:
    """Format a duration for people: ``40.0 s``, ``2 min 5 s``, ``3 h 12 min``, ``24 h``."""
    seconds = value.total_seconds()
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{sign}{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        minutes, secs = divmod(whole, 60)
        return f"{sign}{minutes} min" + (f" {secs} s" if secs else "")
    if whole < 2 * 86400:
        hours, rest = divmod(whole, 3600)
        return f"{sign}{hours} h" + (f" {rest // 60} min" if rest // 60 else "")
    days, rest = divmod(whole, 86400)
    return f"{sign}{days} d" + (f" {rest // 3600} h" if rest // 3600 else "")


def _printable(text: str) -> str:
    """Escape control characters in platform-supplied text so a log line stays one line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _optional_duration(value: timedelta | None, unknown: str = "unknown") -> str:
    return unknown if value is None else _duration(value)


def _close_code_text(code: int | None) -> str:
    if code is None:
        return "none"
    name = _CLOSE_CODE_NAMES.get(code)
    return f"{code} ({name})" if name else str(code)


def _specifics(cause: LikelyCause, facts: CloseFacts, ages: CloseAges) -> str:
    """The part of the explanation that carries this close's numbers."""
    at = facts.at
    if cause is LikelyCause.TOKEN_REVOKED:
        topic = facts.system_message.topic if facts.system_message else "v2.system.token_revoked"
        return (
            f"The platform sent {_printable(topic)}: the access token behind the channel was revoked "
            f"(token age {_optional_duration(ages.token_age)})"
        )
    if cause is LikelyCause.NO_LONGER_SUBSCRIBED:
        message = facts.system_message
        topic = message.topic if message else _NO_LONGER_SUBSCRIBED_TOPIC
        reason = message.reason if message and message.reason else "no reason given"
        text = (
            f"The platform sent {_printable(topic)} (reason: {_printable(reason)}), so the "
            f"channel lost its topics"
        )
        if ages.token_remaining is not None and ages.token_remaining <= timedelta(0):
            text += f"; the token had expired {_duration(-ages.token_remaining)} earlier"
        return text
    if cause is LikelyCause.MAINTENANCE:
        assert facts.socket_closing_at is not None
        notice = at - facts.socket_closing_at
        return (
            f"The platform announced maintenance (v2.system.socket_closing) at "
            f"{_timestamp(facts.socket_closing_at)}, {_duration(notice)} before the socket closed"
        )
    if cause is LikelyCause.CLIENT_CLOSED:
        reason = f" ({_printable(facts.close_reason)})" if facts.close_reason else ""
        return (
            f"crmphone closed the socket itself{reason} at {_timestamp(at)}, "
            f"after {_optional_duration(ages.socket_age)} open"
        )
    if cause is LikelyCause.SERVER_ERROR:
        if facts.close_code in _SERVER_ERROR_CODES:
            return f"The server closed the socket with {_close_code_text(facts.close_code)}" + (
                f", reason {facts.close_reason!r}" if facts.close_reason else ""
            )
        return f"Reconnecting failed with HTTP {facts.reconnect_http_status} from the platform"
    if cause is LikelyCause.DISPLACED:
        return (
            f"The server closed the socket with {_close_code_text(facts.close_code)}, reason "
            f"{facts.close_reason!r}: another connection took over channel {facts.channel_id}"
        )
    if cause is LikelyCause.CHANNEL_EXPIRED:
        deadline = facts.channel_deadline
        assert deadline is not None
        lifetime = (
            f"{_duration(deadline - facts.channel_created_at)} after creation"
            if facts.channel_created_at is not None
            else "creation time unknown"
        )
        return f"The channel reached its expiry at {_timestamp(deadline)} ({lifetime})"
    if cause is LikelyCause.TOKEN_EXPIRED:
        assert facts.token_expires_at is not None
        lifetime = (
            f"{_duration(facts.token_expires_at - facts.token_issued_at)} after it was issued"
            if facts.token_issued_at is not None
            else "issue time unknown"
        )
        return f"The access token expired at {_timestamp(facts.token_expires_at)} ({lifetime})"
    if cause is LikelyCause.EVICTED:
        return (
            f"Channel {facts.channel_id} was gone after the close (HEAD: 404) with "
            f"{_optional_duration(ages.channel_remaining)} of its lifetime and "
            f"{_optional_duration(ages.token_remaining)} of the token's left"
        )
    if cause is LikelyCause.NETWORK_SILENCE:
        silence = _optional_duration(ages.last_frame_age, "ever since it opened")
        heartbeat = _optional_duration(ages.last_heartbeat_age, "never")
        how = (
            "our ping went unanswered"
            if facts.liveness_failed
            else "the connection ended without a close frame"
        )
        return f"No frame for {silence} (last heartbeat: {heartbeat}) and {how}"
    if cause is LikelyCause.IDLE_TIMEOUT:
        reason = f", reason {facts.close_reason!r}" if facts.close_reason else ""
        return (
            f"The server closed the socket with 1001{reason} after "
            f"{_optional_duration(ages.socket_age)} open, with the channel and the token "
            f"still valid"
        )
    reason = f", reason {facts.close_reason!r}" if facts.close_reason else ""
    return (
        f"The {facts.closed_by.value} closed the socket with "
        f"{_close_code_text(facts.close_code)}{reason}"
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


@attrs.frozen
class CloseDiagnosis:
    """The verdict on one close: the facts, the likely cause, a sentence with the numbers.

    Build it with :func:`diagnose`.
    """

    facts: CloseFacts
    cause: LikelyCause
    explanation: str
    ages: CloseAges

    def one_line(self) -> str:
        """One log line: close code and reason, cause, last heartbeat age, token age."""
        facts = self.facts
        reason = repr(facts.close_reason) if facts.close_reason else "-"
        return (
            f"channel {facts.channel_id} closed by {facts.closed_by.value}: "
            f"code={facts.close_code if facts.close_code is not None else '-'} "
            f"reason={reason} cause={self.cause.value} "
            f"last_heartbeat={_optional_duration(self.ages.last_heartbeat_age, 'never')} "
            f"token_age={_optional_duration(self.ages.token_age)}"
        )

    def to_dict(self) -> dict[str, JSONValue]:
        """Return the diagnosis as JSON-ready data: ISO-8601 datetimes, durations in seconds."""
        facts = self.facts
        message = facts.system_message
        facts_dict: dict[str, JSONValue] = {
            "channel_id": facts.channel_id,
            "close_code": facts.close_code,
            "close_reason": facts.close_reason,
            "closed_by": facts.closed_by.value,
            "at": _iso(facts.at),
            "last_frame_at": _iso(facts.last_frame_at),
            "last_heartbeat_at": _iso(facts.last_heartbeat_at),
            "socket_opened_at": _iso(facts.socket_opened_at),
            "channel_created_at": _iso(facts.channel_created_at),
            "channel_expires": _iso(facts.channel_expires),
            "token_issued_at": _iso(facts.token_issued_at),
            "token_expires_at": _iso(facts.token_expires_at),
            "socket_closing_at": _iso(facts.socket_closing_at),
            "system_message": (
                None if message is None else {"topic": message.topic, "reason": message.reason}
            ),
            "liveness_failed": facts.liveness_failed,
            "channel_exists_after": facts.channel_exists_after,
            "reconnect_http_status": facts.reconnect_http_status,
            "clock_skew_allowance": facts.clock_skew_allowance.total_seconds(),
        }
        ages: dict[str, JSONValue] = {
            field.name: _seconds(getattr(self.ages, field.name))
            for field in attrs.fields(CloseAges)
        }
        return {
            "channel_id": facts.channel_id,
            "cause": self.cause.value,
            "summary": self.cause.summary,
            "explanation": self.explanation,
            "remedy": self.cause.remedy,
            "facts": facts_dict,
            "ages": ages,
        }

    def render(self) -> str:
        """Return a multi-line block for people (``crmphone events --explain``)."""
        facts, ages = self.facts, self.ages
        message = facts.system_message
        exists = {True: "exists", False: "gone (404)", None: "not checked"}
        rows = [
            ("likely cause", f"{self.cause.name}: {self.cause.summary}"),
            ("why", self.explanation),
            ("what crmphone does", self.cause.remedy),
            ("closed at", f"{_timestamp(facts.at)} by the {facts.closed_by.value}"),
            ("close code", _close_code_text(facts.close_code)),
            ("close reason", repr(facts.close_reason) if facts.close_reason else "none"),
            ("socket open for", _optional_duration(ages.socket_age)),
            ("last frame", _ago(ages.last_frame_age, "none received")),
            ("last heartbeat", _ago(ages.last_heartbeat_age, "none received")),
            ("ping", "unanswered" if facts.liveness_failed else "no failure"),
            ("token", _lifetime(ages.token_age, ages.token_remaining)),
            ("channel", _lifetime(ages.channel_age, ages.channel_remaining)),
            ("channel after close", exists[facts.channel_exists_after]),
        ]
        if facts.socket_closing_at is not None:
            rows.append(("maintenance notice", _timestamp(facts.socket_closing_at)))
        if message is not None:
            reason = f" (reason: {message.reason})" if message.reason else ""
            rows.append(("system notice", _printable(message.topic + reason)))
        if facts.reconnect_http_status is not None:
            rows.append(("reconnect answer", f"HTTP {facts.reconnect_http_status}"))
        width = max(len(label) for label, _ in rows)
        lines = [f"Channel {facts.channel_id} closed"]
        lines.extend(f"  {label.ljust(width)}  {value}" for label, value in rows)
        return "\n".join(lines)


def _ago(age: timedelta | None, unknown: str) -> str:
    return unknown if age is None else f"{_duration(age)} before the close"


def _lifetime(age: timedelta | None, remaining: timedelta | None) -> str:
    parts = []
    if age is not None:
        parts.append(f"age {_duration(age)}")
    if remaining is not None:
        parts.append(
            f"{_duration(remaining)} left"
            if remaining > timedelta(0)
            else f"expired {_duration(-remaining)} before the close"
        )
    return ", ".join(parts) if parts else "unknown"


def diagnose(facts: CloseFacts) -> CloseDiagnosis:
    """Find the likely cause of a close by the rule table in the module docs (first match wins).

    Pure: the same facts always give the same diagnosis.
    """
    cause = next(cause for cause, matches in _RULES if matches(facts))
    ages = CloseAges.at_close(facts)
    explanation = f"{_specifics(cause, facts, ages)}; {cause.remedy}."
    return CloseDiagnosis(facts=facts, cause=cause, explanation=explanation, ages=ages)
