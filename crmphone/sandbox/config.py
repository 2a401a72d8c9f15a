"""How the sandbox platform behaves: one frozen, validated value.

Every knob that a test or a demo wants to turn lives here, with Genesys Cloud's production value as
the default. Tests shrink the timings (``heartbeat_interval=0.05``, ``token_ttl=0.3``) rather than
sleeping through production intervals.
"""

from __future__ import annotations

import enum
import ipaddress
import math
from collections.abc import Mapping
from typing import Any

import attrs

from crmphone.errors import ConfigError

__all__ = ["SandboxConfig", "SecondSocketPolicy"]


class SecondSocketPolicy(enum.StrEnum):
    """What a second WebSocket on a channel that already has one does.

    Genesys Cloud allows one WebSocket per channel; whether a newcomer displaces the first socket is
    unconfirmed, so the sandbox plays both variants.
    """

    DISPLACE = "displace"
    """The new socket wins; the old one is closed with :data:`~crmphone.sandbox.world.CLOSE_DISPLACED`."""
    ALLOW = "allow"
    """Both sockets stay open and both receive every event."""


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigError(f"must be a positive number, got {value!r}", key=_key(attribute))


def _not_negative(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ConfigError(f"must be zero or a positive number, got {value!r}", key=_key(attribute))


def _count(minimum: int) -> Any:
    def check(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(
                f"must be an integer of at least {minimum}, got {value!r}", key=_key(attribute)
            )

    return check


def _text(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not value or value != value.strip():
        # The value itself may be a secret: never echo it.
        raise ConfigError(
            "must be a non-empty string without surrounding spaces", key=_key(attribute)
        )


def _flag(instance: object, attribute: attrs.Attribute[Any], value: bool) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"must be true or false, got {value!r}", key=_key(attribute))


def _ip_address(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"must be an IP address such as 127.0.0.1, got {value!r}", key=_key(attribute)
        ) from None


def _policy(value: str) -> SecondSocketPolicy:
    try:
        return SecondSocketPolicy(value)
    except ValueError as exc:
        allowed = ", ".join(p.value for p in SecondSocketPolicy)
        raise ConfigError(
            f"must be one of {allowed}, got {value!r}", key="sandbox.second_socket"
        ) from exc


def _key(attribute: attrs.Attribute[Any]) -> str:
    return f"sandbox.{attribute.name}"


@attrs.frozen(kw_only=True)
class SandboxConfig:
    """Settings of a sandbox platform; every field has a production-like default.

    Build one with keywords (``SandboxConfig(heartbeat_interval=0.05)``) or from a parsed TOML table
    with :meth:`from_mapping`. Invalid values raise :class:`~crmphone.errors.ConfigError` naming the
    key. Times are seconds.
    """

    client_id: str = attrs.field(default="demo-client", validator=_text)
    """The one OAuth client the sandbox knows."""
    client_secret: str = attrs.field(default="demo-secret", validator=_text, repr=False)
    """Its secret (never shown in reprs or messages)."""
    heartbeat_interval: float = attrs.field(default=30.0, validator=_positive)
    """How often each WebSocket gets a ``channel.metadata`` heartbeat."""
    token_ttl: float = attrs.field(default=86400.0, validator=_positive)
    """Lifetime of access tokens; channels die with the token that created them."""
    channel_ttl: float = attrs.field(default=86400.0, validator=_positive)
    """Lifetime of a notification channel (extended by resubscribing when so configured)."""
    max_channels_per_client: int = attrs.field(default=20, validator=_count(1))
    """Channels per OAuth client (client credentials) or per user (user tokens); one more evicts."""
    max_topics_per_channel: int = attrs.field(default=1000, validator=_count(1))
    """Topics one channel may hold; more is a 400."""
    rate_limit_per_minute: int = attrs.field(default=300, validator=_count(0))
    """API requests per token in any sliding 60 s window; 0 disables the limit."""
    second_socket: SecondSocketPolicy = attrs.field(
        default=SecondSocketPolicy.DISPLACE, converter=_policy
    )
    """``"displace"`` or ``"allow"``: see :class:`SecondSocketPolicy`."""
    resubscribe_extends: bool = True
    """Whether PUT/POST of subscriptions pushes the channel's ``expires`` out by ``channel_ttl``."""
    agents: int = attrs.field(default=5, validator=_count(1))
    """How many agents (users with a WebRTC station) the sandbox organisation has."""
    seed: int = 1
    """Seed of every id and random choice, so runs are reproducible."""
    calls_per_minute: float = attrs.field(default=0.0, validator=_not_negative)
    """Mean rate of background inbound calls (Poisson arrivals); 0 places calls only on request."""
    ring_seconds: float = attrs.field(default=2.0, validator=_not_negative)
    """How long an automatic call rings before the agent answers."""
    talk_seconds: float = attrs.field(default=5.0, validator=_not_negative)
    """How long an automatic call talks before the customer hangs up."""
    wrapup_seconds: float = attrs.field(default=0.5, validator=_not_negative)
    """How long after disconnecting the agent's wrap-up code arrives."""
    queues: int = attrs.field(default=2, validator=_count(1))
    """How many ACD queues exist (inbound calls arrive through the first unless told otherwise)."""
    alerting_timeout: float = attrs.field(default=30.0, validator=_positive)
    """How long a manual (``auto=False``) call rings unanswered before it times out."""
    sweep_interval: float = attrs.field(default=0.1, validator=_positive)
    """How often the expiry sweep looks at tokens and channels (bounds expiry precision)."""
    max_topic_length: int = attrs.field(default=200, validator=_count(1))
    """Longest topic string accepted in a subscription request (combined form included)."""
    persistent_connections: bool = attrs.field(default=True, validator=_flag)
    """Stations keep their WebRTC connection between calls (``webRtcPersistentEnabled``)."""
    persistent_timeout: float = attrs.field(default=600.0, validator=_positive)
    """Idle seconds after which the media edge closes a persistent connection with no call."""
    accept_off_queue: bool = attrs.field(default=False, validator=_flag)
    """Agents hold ``routing:conversation:acceptOffQueue``: their connection is set up at login."""
    media_relay: bool = attrs.field(default=False, validator=_flag)
    """Route every edge peer connection's media through a UDP relay (delay, loss, blackhole)."""
    media_delay: float = attrs.field(default=0.0, validator=_not_negative)
    """One-way media delay in seconds added by the relay; above 0 it implies ``media_relay``."""
    media_host: str = attrs.field(default="127.0.0.1", validator=_ip_address)
    """The address the media edge gathers its ICE host candidates on (and its relays bind)."""
    ledger_limit: int = attrs.field(default=10_000, validator=_count(0))
    """Topic events the ledger keeps, the oldest dropped first (0 keeps every one): bounds the
    memory of a sandbox that runs for hours (each entry holds the event's body)."""

    @property
    def uses_relay(self) -> bool:
        """True when media passes through a relay (``media_relay`` or a ``media_delay``)."""
        return self.media_relay or self.media_delay > 0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SandboxConfig:
        """Build a config from a parsed table (TOML, JSON); unknown keys are a ConfigError."""
        known = {field.name for field in attrs.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                key="sandbox",
            )
        try:
            return cls(**values)
        except TypeError as exc:  # a wrongly typed value that attrs itself rejected
            raise ConfigError(str(exc), key="sandbox") from exc
