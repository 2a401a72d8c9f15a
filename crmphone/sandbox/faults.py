"""Fault injection: the ways a real platform connection goes wrong, on demand.

Every fault is a method of :class:`Faults` (``sandbox.faults``) and a JSON document for
``POST /sandbox/faults`` (``{"kind": "<method name>", ...keyword arguments}``, see
:meth:`Faults.apply`). Socket faults take an optional ``channel_id``; without one they hit every
open socket. Every fault applied is kept in :attr:`Faults.records` (time, kind, targets, params).

What each fault puts on the wire:

``socket_closing``
    ``{"topicName": "v2.system.socket_closing", "eventBody": {"message": ...}}``, then, after
    ``close_after`` seconds during which events keep flowing, close ``code`` (default 1001).
``silence`` / ``unsilence``
    The socket goes dead but stays open: no heartbeats, no events, no pongs, and the server stops
    reading (WebSocket protocol pings go unanswered too).
``drop_tcp``
    The TCP connection is aborted: no close frame.
``close``
    A close frame with the given code and reason.
``revoke_token``
    The channel's token (every token of its user or client; without ``channel_id``: every token)
    is revoked: REST answers 401; each socket of its channels gets
    ``v2.system.token_revoked.{userOrClientId}`` and closes with 1000 ``token revoked``.
``no_longer_subscribed``
    ``{"topicName": "v2.system.no_longer_subscribed.{channelId}", "eventBody": {"reason": ...,
    "message": ...}}`` and the channel's subscriptions are dropped (the socket stays open).
``rate_limit_burst``
    The next ``count`` API requests get 429 with ``Retry-After: retry_after``.
``malformed_frames``
    Frames a client must survive: ``not_json``, ``binary``, ``unknown_shape`` (JSON without
    ``topicName``), ``oversized`` (a valid frame of ``oversized_bytes``, default just over 1 MiB,
    the usual client ``max_size``), ``truncated`` (half an event frame).
``deny_topic_prefix`` / ``allow_topic_prefix``
    Subscriptions to topics under the prefix are rejected from now on (missing permissions).
``stale_client`` (``agent_id``)
    The agent's softphone vanishes from the platform's point of view: its signalling socket is
    aborted (no close frame, no ``terminate``) and its media dropped (blackholed in the relay when
    ``media_relay`` is on; otherwise the edge stops sending and ignores what it receives). The edge
    keeps believing the connection is up until the idle timeout, so calls to the agent fail.
``media_blackhole`` (``agent_id``, ``on``)
    Every datagram of the agent's media path is lost, both ways (``on=false`` heals it). Needs
    ``media_relay``.

JSON parameter names may be given in camelCase (``{"kind": "stale_client", "agentId": ...}``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from crmphone.errors import BadRequestError, NotFoundError

from . import wire

if TYPE_CHECKING:
    from .hub import Sandbox, SocketLink

__all__ = ["MALFORMED_KINDS", "FaultRecord", "Faults"]

MALFORMED_KINDS = ("not_json", "binary", "unknown_shape", "oversized", "truncated")
"""Every kind of frame :meth:`Faults.malformed_frames` can send."""

DEFAULT_OVERSIZED_BYTES = (1 << 20) + 1024
"""Just over 1 MiB: beyond the default ``max_size`` of websockets clients and of crmphone."""


@attrs.frozen
class FaultRecord:
    """One fault as applied: when, what, on which sockets/channels, with which parameters."""

    at: datetime
    kind: str
    targets: tuple[str, ...]
    params: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for the sandbox state."""
        return {
            "at": wire.iso_utc(self.at),
            "kind": self.kind,
            "targets": list(self.targets),
            "params": dict(self.params),
        }


class Faults:
    """Fault controls of one sandbox; call them on the sandbox's event loop."""

    KINDS = (
        "socket_closing",
        "silence",
        "unsilence",
        "drop_tcp",
        "close",
        "revoke_token",
        "no_longer_subscribed",
        "rate_limit_burst",
        "malformed_frames",
        "deny_topic_prefix",
        "allow_topic_prefix",
        "stale_client",
        "media_blackhole",
    )
    """The fault kinds :meth:`apply` accepts (each is the method of that name)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self.records: list[FaultRecord] = []

    # ------------------------------------------------------------------ the faults

    def socket_closing(
        self,
        close_after: float = 60.0,
        *,
        code: int = 1001,
        reason: str = "server maintenance",
        channel_id: str | None = None,
    ) -> FaultRecord:
        """Announce maintenance with ``v2.system.socket_closing``; close ``close_after`` s later."""
        links = self._links(channel_id)
        body = {"message": f"This socket will close in {close_after:g} seconds for maintenance."}
        frame = wire.system_frame("v2.system.socket_closing", body)
        for link in links:
            link.send(frame)
            link.close_later(close_after, code, reason)
        return self._record(
            "socket_closing", links, close_after=close_after, code=code, reason=reason
        )

    def silence(self, *, channel_id: str | None = None) -> FaultRecord:
        """Make sockets dead but open (see the module docstring)."""
        links = self._links(channel_id)
        for link in links:
            link.silence()
        return self._record("silence", links)

    def unsilence(self, *, channel_id: str | None = None) -> FaultRecord:
        """Bring silenced sockets back to life."""
        links = self._links(channel_id)
        for link in links:
            link.unsilence()
        return self._record("unsilence", links)

    def drop_tcp(self, *, channel_id: str | None = None) -> FaultRecord:
        """Abort the TCP connections of the sockets, without a close frame."""
        links = self._links(channel_id)
        for link in links:
            link.abort()
        return self._record("drop_tcp", links)

    def close(
        self, code: int = 1011, reason: str = "", *, channel_id: str | None = None
    ) -> FaultRecord:
        """Close the sockets with ``code`` and ``reason`` (the channel itself lives on)."""
        links = self._links(channel_id)
        for link in links:
            link.close(code, reason)
        return self._record("close", links, code=code, reason=reason)

    def revoke_token(self, *, channel_id: str | None = None) -> FaultRecord:
        """Revoke the tokens of the channel's user/client (without ``channel_id``: all tokens)."""
        world = self._sandbox.world
        subject = None
        if channel_id is not None:
            subject = world.subject_of(channel_id)
            if subject is None:
                raise NotFoundError(
                    f"Channel {channel_id} not found.", status=404, code="not.found"
                )
        closes = world.revoke(subject)
        self._sandbox.apply(closes)
        return self._record(
            "revoke_token",
            (),
            targets=tuple(action.socket_id for action in closes),
            subject=subject,
        )

    def no_longer_subscribed(
        self, reason: str = "another_channel_subscribed", *, channel_id: str | None = None
    ) -> FaultRecord:
        """Tell channels they lost their subscriptions, and drop them (sockets stay open)."""
        links = self._links(channel_id)
        channel_ids = list(dict.fromkeys(link.channel_id for link in links))
        if channel_id is not None and channel_id not in channel_ids:
            channel_ids.append(channel_id)
        for target in channel_ids:
            frame = wire.system_frame(
                f"v2.system.no_longer_subscribed.{target}",
                {
                    "reason": reason,
                    "message": "This channel is no longer subscribed to its topics.",
                },
            )
            for link in self._sandbox.links(target):
                link.send(frame)
            self._sandbox.world.drop_subscriptions(target)
        return self._record("no_longer_subscribed", (), targets=tuple(channel_ids), reason=reason)

    def rate_limit_burst(self, count: int, retry_after: int = 1) -> FaultRecord:
        """Answer the next ``count`` API requests with 429 and ``Retry-After: retry_after``."""
        if count < 0 or retry_after < 0:
            raise BadRequestError("count and retry_after must not be negative.", status=400)
        self._sandbox.world.force_rate_limit(int(count), int(retry_after))
        return self._record(
            "rate_limit_burst", (), targets=("api",), count=count, retry_after=retry_after
        )

    def malformed_frames(
        self,
        kinds: Iterable[str] = MALFORMED_KINDS,
        *,
        channel_id: str | None = None,
        oversized_bytes: int = DEFAULT_OVERSIZED_BYTES,
    ) -> FaultRecord:
        """Send frames that break the protocol, one per kind, in the order given."""
        kinds = tuple(kinds)
        unknown = [kind for kind in kinds if kind not in MALFORMED_KINDS]
        if unknown:
            raise BadRequestError(
                f"Unknown malformed frame kind(s) {unknown}; known: {list(MALFORMED_KINDS)}.",
                status=400,
            )
        frames = [self._malformed(kind, oversized_bytes) for kind in kinds]
        links = self._links(channel_id)
        for link in links:
            for frame in frames:
                link.send(frame)
        return self._record(
            "malformed_frames", links, kinds=list(kinds), oversized_bytes=oversized_bytes
        )

    def deny_topic_prefix(
        self, prefix: str, missing: str = "routing:queue:view", reason: str | None = None
    ) -> FaultRecord:
        """Reject new subscriptions to topics under ``prefix``, reporting ``missing``."""
        self._sandbox.world.deny_topic_prefix(prefix, missing=missing, reason=reason)
        return self._record("deny_topic_prefix", (), targets=(prefix,), missing=missing)

    def allow_topic_prefix(self, prefix: str) -> FaultRecord:
        """Undo :meth:`deny_topic_prefix`."""
        self._sandbox.world.allow_topic_prefix(prefix)
        return self._record("allow_topic_prefix", (), targets=(prefix,))

    def stale_client(self, agent_id: str) -> FaultRecord:
        """The agent's softphone vanishes without telling (see the module docstring)."""
        targets = self._sandbox.edge.stale_client(agent_id)
        return self._record("stale_client", (), targets=targets, agent_id=agent_id)

    def media_blackhole(self, agent_id: str, on: bool = True) -> FaultRecord:
        """Lose (``on``) or stop losing every datagram of the agent's media path; needs the relay."""
        targets = self._sandbox.edge.media_blackhole(agent_id, on)
        return self._record("media_blackhole", (), targets=targets, agent_id=agent_id, on=on)

    # ------------------------------------------------------------------ the JSON door

    def apply(self, spec: Mapping[str, Any]) -> FaultRecord:
        """Apply ``{"kind": name, **params}`` (the ``POST /sandbox/faults`` body).

        BadRequestError for an unknown kind or parameters the fault does not take.
        """
        params = {_snake_case(str(key)): value for key, value in spec.items()}
        kind = params.pop("kind", None)
        if kind not in self.KINDS:
            raise BadRequestError(
                f"Unknown fault kind {kind!r}; known: {', '.join(self.KINDS)}.", status=400
            )
        method = getattr(self, str(kind))
        if "on" in params and not isinstance(params["on"], bool):
            raise BadRequestError(f"on must be true or false, got {params['on']!r}.", status=400)
        try:
            inspect.signature(method).bind(**params)
        except TypeError as exc:
            raise BadRequestError(f"Bad parameters for {kind}: {exc}.", status=400) from exc
        record: FaultRecord = method(**params)
        return record

    # ------------------------------------------------------------------ internals

    def _links(self, channel_id: str | None) -> list[SocketLink]:
        if channel_id is not None and not self._sandbox.world.has_channel(channel_id):
            raise NotFoundError(f"Channel {channel_id} not found.", status=404, code="not.found")
        return self._sandbox.links(channel_id)

    def _record(
        self,
        kind: str,
        links: Iterable[SocketLink],
        *,
        targets: tuple[str, ...] | None = None,
        **params: Any,
    ) -> FaultRecord:
        if targets is None:
            targets = tuple(link.id for link in links)
        record = FaultRecord(self._sandbox.clock.wall(), kind, targets, params)
        self.records.append(record)
        self._sandbox.world.counters[f"fault_{kind}"] += 1
        return record

    @staticmethod
    def _malformed(kind: str, oversized_bytes: int) -> str | bytes:
        if kind == "not_json":
            return "this is not JSON {"
        if kind == "binary":
            return b"\x00\x01\x02 binary frames are not part of the protocol"
        if kind == "unknown_shape":
            return wire.dumps({"hello": "world", "note": "no topicName"})
        if kind == "oversized":
            skeleton = wire.system_frame("channel.metadata", {"message": ""})
            padding = max(0, oversized_bytes - len(skeleton))
            return wire.system_frame("channel.metadata", {"message": "x" * padding})
        event = wire.event_frame(
            "v2.users.unknown.presence",
            {"presenceDefinition": {"systemPresence": "Available"}},
            "00000000-0000-4000-8000-000000000000",
        )
        return event[: len(event) // 2]


def _snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", lambda match: "_" + match[1].lower(), name)
