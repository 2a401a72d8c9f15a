"""aiortc plumbing shared by the softphone and the sandbox's media edge (private).

Three things every peer connection in crmphone needs, kept in one place:

* **Explicit ICE configuration.** aiortc's default configuration points at a public STUN server;
  with no route to it, candidate gathering stalls about five seconds per side. Every connection
  here is built from an :class:`IceSettings` value: no STUN/TURN unless configured.
* **The host addresses ICE may use.** aioice gathers host candidates from every non-loopback
  interface. Production wants that; tests, benchmarks and the sandbox must keep media on
  ``127.0.0.1``. aioice's module-level ``get_host_addresses`` is the one hook it offers; we replace
  it once with a function that consults a context variable, which :func:`set_local_description`
  sets around gathering. So two connections in one process may use different settings, and a
  connection built without a setting gets aioice's own behaviour.
* **Observing media arrival through public APIs**: the first RTP packet of a call
  (:func:`first_rtp_at`) and a signature that changes whenever RTP or an RTCP sender report arrives
  (:func:`arrival_signature`), which the liveness watchdog compares over time.

Nothing here is part of crmphone's public API; :class:`IceSettings` is re-exported by the phone.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

import aioice.ice
import attrs
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)

__all__ = [
    "LOOPBACK_ICE",
    "IceServer",
    "IceSettings",
    "arrival_signature",
    "create_peer_connection",
    "first_rtp_at",
    "replace_candidates",
    "sdp_candidates",
    "set_local_description",
]


@attrs.frozen
class IceServer:
    """A STUN or TURN server (``urls`` like ``"turn:turn.example.com:3478?transport=udp"``)."""

    urls: tuple[str, ...] = attrs.field(converter=tuple)
    username: str | None = None
    credential: str | None = attrs.field(default=None, repr=False)


def _optional_tuple(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


@attrs.frozen
class IceSettings:
    """How a peer connection finds its network paths.

    ``host_addresses``: the local addresses host candidates are gathered on; ``None`` means every
    non-loopback interface (aioice's default, right for production). ``servers``: STUN/TURN
    servers; empty by default, because an unreachable STUN server stalls every set-up.
    """

    host_addresses: tuple[str, ...] | None = attrs.field(default=None, converter=_optional_tuple)
    servers: tuple[IceServer, ...] = attrs.field(default=(), converter=tuple)


LOOPBACK_ICE = IceSettings(host_addresses=("127.0.0.1",))
"""All media on 127.0.0.1: the sandbox, the tests and the benchmarks."""

_host_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "crmphone_ice_host_addresses", default=None
)
_aioice_host_addresses = aioice.ice.get_host_addresses


def _configured_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _host_addresses.get()
    if chosen is None:
        return _aioice_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    return [
        address
        for address in chosen
        if (":" in address and use_ipv6) or (":" not in address and use_ipv4)
    ]


aioice.ice.get_host_addresses = _configured_host_addresses


@contextmanager
def _gathering_on(ice: IceSettings) -> Iterator[None]:
    token = _host_addresses.set(ice.host_addresses)
    try:
        yield
    finally:
        _host_addresses.reset(token)


def create_peer_connection(ice: IceSettings) -> RTCPeerConnection:
    """A new peer connection with exactly the STUN/TURN servers in ``ice`` (none by default)."""
    servers = [
        RTCIceServer(urls=list(server.urls), username=server.username, credential=server.credential)
        for server in ice.servers
    ]
    return RTCPeerConnection(RTCConfiguration(iceServers=servers))


async def set_local_description(
    pc: RTCPeerConnection, description: RTCSessionDescription, ice: IceSettings
) -> None:
    """``pc.setLocalDescription(description)``, gathering candidates only on ``ice``'s addresses.

    aiortc gathers inside this call (it does not trickle), in the calling task, so the context
    variable set here is what the aioice hook sees.
    """
    with _gathering_on(ice):
        await pc.setLocalDescription(description)


_CANDIDATE = re.compile(r"^a=candidate:(\S+) (\d+) (\S+) (\d+) (\S+) (\d+) (typ .*)$")


def sdp_candidates(sdp: str) -> list[tuple[str, int]]:
    """The ``(host, port)`` of every ``a=candidate`` line in ``sdp``, in order."""
    found = []
    for line in sdp.splitlines():
        match = _CANDIDATE.match(line.strip())
        if match:
            found.append((match.group(5), int(match.group(6))))
    return found


def replace_candidates(sdp: str, host: str, port: int) -> str:
    """``sdp`` with every candidate (and the ``c=`` / ``m=`` defaults) pointing at ``host:port``.

    Used to put a relay (network emulation) between two peers: each side is told the relay's
    address instead of the other's.
    """
    lines = []
    for line in sdp.split("\r\n"):
        match = _CANDIDATE.match(line)
        if match:
            foundation, component, transport, priority, _, _, rest = match.groups()
            line = (
                f"a=candidate:{foundation} {component} {transport} {priority} {host} {port} {rest}"
            )
        elif line.startswith("c=IN IP4 "):
            line = f"c=IN IP4 {host}"
        elif line.startswith("m=audio "):
            parts = line.split(" ")
            parts[1] = str(port)
            line = " ".join(parts)
        lines.append(line)
    return "\r\n".join(lines)


_POLL_SECONDS = 0.002


async def first_rtp_at(
    receiver: RTCRtpReceiver, *, after: datetime, within: float
) -> datetime | None:
    """Wall-clock (UTC) arrival time of the first RTP packet ``receiver`` got later than ``after``.

    ``getSynchronizationSources()`` reports each source's latest arrival time as stamped by
    aiortc when the packet came in, so polling every few milliseconds still yields the arrival
    time itself (at worst a packet later, when two arrive within one poll). None when nothing
    arrives ``within`` seconds.
    """
    try:
        async with asyncio.timeout(within):
            while True:
                latest = [
                    source.timestamp
                    for source in receiver.getSynchronizationSources()
                    if source.timestamp > after
                ]
                if latest:
                    return min(latest)
                await asyncio.sleep(_POLL_SECONDS)
    except TimeoutError:
        return None


async def arrival_signature(receiver: RTCRtpReceiver) -> tuple[object, ...]:
    """A value that changes whenever RTP or an RTCP sender report reaches ``receiver``.

    During a call RTP arrives every packetisation interval; between calls the far end's sender
    still sends a sender report every 0.5-1.5 s (RFC 3550 timing in aiortc), so an unchanged
    signature over a few seconds means the media path is dead.
    """
    rtp = tuple(sorted((s.source, s.timestamp) for s in receiver.getSynchronizationSources()))
    stats = await receiver.getStats()
    reports = tuple(
        sorted(
            (str(stat.id), stat.timestamp)
            for stat in stats.values()
            if getattr(stat, "type", None) == "remote-outbound-rtp"
        )
    )
    return (rtp, reports)
