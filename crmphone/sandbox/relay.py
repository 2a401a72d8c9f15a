"""Network emulation in user space: a delaying UDP relay for media and a delaying TCP proxy.

The kernel on our machines has no ``netem``, and loopback hides every cost a persistent connection
saves (ICE checks, the DTLS handshake, signalling round trips). These two pieces put a configurable
one-way delay, loss, or a vanished network between two local peers:

* :class:`UdpRelay` stands between a WebRTC client and the sandbox's media edge. Each side is told
  the relay's address instead of the other's (rewrite the candidates of the offer and the answer),
  and every datagram crosses the relay after ``one_way_delay`` seconds, in order. It counts what
  crosses, classified as STUN, DTLS (ClientHellos apart) or RTP/RTCP by the first byte as in
  RFC 7983, so a test can prove that a call on a persistent connection needed no new handshake.
* :class:`TcpDelayProxy` delays every chunk of a TCP connection in both directions: put it in front
  of the sandbox's REST and WebSocket port to give signalling the same round-trip time as media.

.. code-block:: text

    WebRTC client ──▶ client_facing ┐            ┌ edge_facing ──▶ media edge
                 ◀──                └─ UdpRelay ─┘             ◀──
                       (each way: loss, blackhole, then one_way_delay, FIFO)

.. code-block:: python

    async with UdpRelay(one_way_delay=0.05) as relay:
        relay.connect(edge=edge_candidate)                 # client learnt from its first datagram
        offer_for_client = replace_candidates(offer_sdp, *relay.client_facing)
        answer_for_edge = replace_candidates(answer_sdp, *relay.edge_facing)
        ...
        stats = await relay.wait_for(lambda s: s.to_client.rtp > 0, within=5.0)

Both classes bind ``127.0.0.1`` by default, stop everything they started when their ``async with``
block ends, and are driven by the running event loop. Invalid settings raise
:class:`~crmphone.errors.ConfigError`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import random
import socket
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import attrs

from crmphone.errors import ConfigError, InvalidStateError

__all__ = [
    "DatagramKind",
    "DirectionStats",
    "RelayStats",
    "TcpDelayProxy",
    "UdpRelay",
    "classify_datagram",
    "is_dtls_client_hello",
    "is_stun_binding_request",
]

logger = logging.getLogger(__name__)

Address = tuple[str, int]

STUN_MAGIC_COOKIE = b"\x21\x12\xa4\x42"
"""Bytes 4-7 of every RFC 5389 STUN message."""

_SOCKET_BUFFER_BYTES = 4 << 20
"""Kernel buffers large enough that a burst in a test is not dropped before we read it."""
_SO_SNDBUFFORCE, _SO_RCVBUFFORCE = 32, 33  # Linux; elsewhere setsockopt fails and we fall back

_TCP_CHUNK_BYTES = 64 << 10
_TCP_QUEUE_CHUNKS = 256
"""Chunks in flight per direction before the proxy stops reading (bounds memory, ~16 MiB)."""

_TCP_CLOSE_SECONDS = 1.0
"""How long a closing proxied connection may take to flush before it is aborted."""


# ---------------------------------------------------------------------- classification (RFC 7983)


class DatagramKind(enum.Enum):
    """What a datagram on a WebRTC 5-tuple carries, by its first byte (RFC 7983 §7)."""

    STUN = "stun"
    """First byte 0-3: a STUN message (ICE connectivity checks, consent freshness)."""
    DTLS = "dtls"
    """First byte 20-63: a DTLS record (the handshake, then SCTP data channels)."""
    RTP = "rtp"
    """First byte 128-191 and a second byte outside 192-223: an SRTP packet."""
    RTCP = "rtcp"
    """First byte 128-191 and a second byte 192-223 (RFC 5761 §4): an SRTCP packet."""
    OTHER = "other"
    """Anything else (ZRTP, TURN channel data, garbage)."""


def classify_datagram(data: bytes) -> DatagramKind:
    """The :class:`DatagramKind` of one UDP payload, by RFC 7983 demultiplexing."""
    if not data:
        return DatagramKind.OTHER
    first = data[0]
    if first <= 3:
        return DatagramKind.STUN
    if 20 <= first <= 63:
        return DatagramKind.DTLS
    if 128 <= first <= 191:
        if len(data) >= 2 and 192 <= data[1] <= 223:
            return DatagramKind.RTCP
        return DatagramKind.RTP
    return DatagramKind.OTHER


def is_dtls_client_hello(data: bytes) -> bool:
    """Whether ``data`` starts with a DTLS record carrying a ClientHello.

    The record's content type is handshake (22), its epoch is 0 (the encrypted Finished message is
    also a handshake record, in epoch 1, with ciphertext where the handshake type would be) and the
    handshake type at offset 13, just after the 13-byte record header, is client_hello (1).
    """
    return len(data) > 13 and data[0] == 22 and data[3:5] == b"\x00\x00" and data[13] == 1


def is_stun_binding_request(data: bytes) -> bool:
    """Whether ``data`` is a STUN Binding request (type 0x0001 with the RFC 5389 magic cookie)."""
    return len(data) >= 20 and data[0:2] == b"\x00\x01" and data[4:8] == STUN_MAGIC_COOKIE


# ---------------------------------------------------------------------- statistics


@attrs.frozen
class DirectionStats:
    """What crossed the relay in one direction, counted when the relay sent it on.

    ``received`` counts every datagram that arrived; each one is eventually either forwarded
    (``datagrams``, ``payload_bytes``, and exactly one of the kinds below) or ``dropped`` (loss,
    blackhole, or no destination known yet); the rest are in flight, or were discarded when the
    relay closed. ``dtls_client_hellos`` is a subset of ``dtls``. ``first_rtp_after_mark`` is the :func:`time.monotonic` time at which the relay
    delivered the first RTP packet since the last :meth:`UdpRelay.mark` (or since it started).
    """

    received: int = 0
    datagrams: int = 0
    payload_bytes: int = 0
    dropped: int = 0
    stun: int = 0
    dtls: int = 0
    dtls_client_hellos: int = 0
    rtp: int = 0
    rtcp: int = 0
    other: int = 0
    first_rtp_after_mark: float | None = None


@attrs.frozen
class RelayStats:
    """A snapshot of both directions of a :class:`UdpRelay`."""

    to_edge: DirectionStats
    """Client → edge (arrived on ``client_facing``, sent from ``edge_facing``)."""
    to_client: DirectionStats
    """Edge → client (arrived on ``edge_facing``, sent from ``client_facing``)."""

    @property
    def dropped(self) -> int:
        """Datagrams dropped in both directions."""
        return self.to_edge.dropped + self.to_client.dropped


@attrs.define
class _Counters:
    """The mutable counterpart of :class:`DirectionStats`, owned by one lane."""

    received: int = 0
    datagrams: int = 0
    payload_bytes: int = 0
    dropped: int = 0
    kinds: collections.Counter[DatagramKind] = attrs.Factory(collections.Counter)
    dtls_client_hellos: int = 0
    first_rtp_after_mark: float | None = None

    def freeze(self) -> DirectionStats:
        return DirectionStats(
            received=self.received,
            datagrams=self.datagrams,
            payload_bytes=self.payload_bytes,
            dropped=self.dropped,
            stun=self.kinds[DatagramKind.STUN],
            dtls=self.kinds[DatagramKind.DTLS],
            dtls_client_hellos=self.dtls_client_hellos,
            rtp=self.kinds[DatagramKind.RTP],
            rtcp=self.kinds[DatagramKind.RTCP],
            other=self.kinds[DatagramKind.OTHER],
            first_rtp_after_mark=self.first_rtp_after_mark,
        )


# ---------------------------------------------------------------------- UDP relay


class _Endpoint(asyncio.DatagramProtocol):
    """One relay socket: hands every datagram to the relay."""

    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self._on_datagram = on_datagram
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable when a peer has gone: a real network would lose the datagram too.
        logger.debug("relay socket error (datagram lost): %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _Lane:
    """One direction of the relay: a FIFO of (deadline, datagram) drained by one timer."""

    def __init__(self, relay: UdpRelay) -> None:
        self._relay = relay
        self.counters = _Counters()
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None
        self.last_due = 0.0
        self.transport: asyncio.DatagramTransport | None = None
        self.destination: Callable[[], Address | None] = lambda: None

    def accept(self, data: bytes, loop: asyncio.AbstractEventLoop) -> None:
        self.counters.received += 1
        relay = self._relay
        if relay.blackhole or (relay.loss > 0.0 and relay.random.random() < relay.loss):
            self.counters.dropped += 1
            relay._changed()
            return
        # Never earlier than the datagram ahead: lowering the delay must not reorder the lane.
        due = max(loop.time() + relay.one_way_delay, self.last_due)
        self.last_due = due
        self.queue.append((due, data))
        if self.timer is None:
            self.timer = loop.call_at(due, self.flush, loop)
        relay._changed()

    def flush(self, loop: asyncio.AbstractEventLoop) -> None:
        # One timer per lane, not one per datagram: the loop's timer heap does not keep equal
        # deadlines in FIFO order, this deque does.
        self.timer = None
        now = loop.time()
        while self.queue and self.queue[0][0] <= now:
            _, data = self.queue.popleft()
            self.deliver(data)
        if self.queue:
            self.timer = loop.call_at(self.queue[0][0], self.flush, loop)
        self._relay._changed()

    def deliver(self, data: bytes) -> None:
        counters = self.counters
        destination = self.destination()
        if self._relay.blackhole or destination is None or self.transport is None:
            counters.dropped += 1
            return
        self.transport.sendto(data, destination)
        counters.datagrams += 1
        counters.payload_bytes += len(data)
        kind = classify_datagram(data)
        counters.kinds[kind] += 1
        if kind is DatagramKind.DTLS and is_dtls_client_hello(data):
            counters.dtls_client_hellos += 1
        elif kind is DatagramKind.RTP and counters.first_rtp_after_mark is None:
            counters.first_rtp_after_mark = time.monotonic()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()


def _udp_socket(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        for forced, option in (
            (_SO_RCVBUFFORCE, socket.SO_RCVBUF),
            (_SO_SNDBUFFORCE, socket.SO_SNDBUF),
        ):
            try:  # beyond net.core.rmem_max/wmem_max when privileged, else up to them
                sock.setsockopt(socket.SOL_SOCKET, forced, _SOCKET_BUFFER_BYTES)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER_BYTES)
        sock.bind((host, 0))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _check_delay(value: float) -> float:
    if not value >= 0.0:  # also rejects NaN
        raise ConfigError(f"must be a number of seconds >= 0, not {value!r}", key="one_way_delay")
    return float(value)


def _check_loss(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"must be a probability between 0 and 1, not {value!r}", key="loss")
    return float(value)


class UdpRelay:
    """A UDP relay with delay, loss and blackhole between a WebRTC client and the media edge.

    ``async with UdpRelay(one_way_delay=0.05) as relay:`` binds two sockets on ``host``:
    :attr:`client_facing` (advertise it to the client in place of the edge's candidates) and
    :attr:`edge_facing` (advertise it to the edge in place of the client's). Call :meth:`connect`
    with the edge's real address before media flows. A datagram arriving on one socket leaves from
    the other ``one_way_delay`` seconds later, in arrival order per direction. ``one_way_delay``,
    ``loss`` (a probability, drawn from ``random.Random(seed)``) and ``blackhole`` (drop
    everything, in flight too: the network vanished) may be changed at any time.
    """

    def __init__(
        self,
        *,
        one_way_delay: float = 0.0,
        loss: float = 0.0,
        seed: int | None = 0,
        host: str = "127.0.0.1",
    ) -> None:
        self._one_way_delay = _check_delay(one_way_delay)
        self._loss = _check_loss(loss)
        self.random = random.Random(seed)
        """The source of loss decisions; seeded so a lossy run can be reproduced."""
        self.blackhole = False
        """When true every datagram is dropped, both ways, including those in flight."""
        self.host = host
        self._edge: Address | None = None
        self._client: Address | None = None
        self._to_edge = _Lane(self)
        self._to_client = _Lane(self)
        self._to_edge.destination = lambda: self._edge
        self._to_client.destination = lambda: self._client
        self._endpoints: list[_Endpoint] = []
        self._client_facing: Address | None = None
        self._edge_facing: Address | None = None
        self._waiters: list[tuple[Callable[[RelayStats], bool], asyncio.Future[RelayStats]]] = []

    # ------------------------------------------------------------------ settings

    @property
    def one_way_delay(self) -> float:
        """Seconds every datagram waits in the relay; applies to datagrams arriving from now on."""
        return self._one_way_delay

    @one_way_delay.setter
    def one_way_delay(self, value: float) -> None:
        self._one_way_delay = _check_delay(value)

    @property
    def loss(self) -> float:
        """Probability (0-1) that an arriving datagram is dropped, each direction independently."""
        return self._loss

    @loss.setter
    def loss(self, value: float) -> None:
        self._loss = _check_loss(value)

    # ------------------------------------------------------------------ addresses

    @property
    def client_facing(self) -> Address:
        """``(host, port)`` the client sends to: put it in the edge's SDP the client receives."""
        if self._client_facing is None:
            raise InvalidStateError("the relay is not running (use `async with`)")
        return self._client_facing

    @property
    def edge_facing(self) -> Address:
        """``(host, port)`` the edge sends to: put it in the client's SDP the edge receives."""
        if self._edge_facing is None:
            raise InvalidStateError("the relay is not running (use `async with`)")
        return self._edge_facing

    @property
    def edge(self) -> Address | None:
        """The edge's real address, as given to :meth:`connect`."""
        return self._edge

    @property
    def client(self) -> Address | None:
        """Where edge → client datagrams go: the configured or last seen client address."""
        return self._client

    def connect(self, edge: Address, client: Address | None = None) -> None:
        """Relay to ``edge`` (its real candidate address) and, until it speaks, to ``client``.

        The client address is always updated to the source of the latest datagram arriving on
        :attr:`client_facing`, so ``client`` may be omitted (it is learnt from the first ICE
        check) and a client that moves to a new port is followed. Calling again re-targets.
        """
        self._edge = (edge[0], int(edge[1]))
        self._client = None if client is None else (client[0], int(client[1]))

    # ------------------------------------------------------------------ observation

    def stats(self) -> RelayStats:
        """A frozen snapshot of the counters of both directions."""
        return RelayStats(
            to_edge=self._to_edge.counters.freeze(), to_client=self._to_client.counters.freeze()
        )

    def mark(self) -> None:
        """Forget the first RTP delivery time of both directions (for example at a call start).

        The next RTP packet each way sets :attr:`DirectionStats.first_rtp_after_mark` again.
        """
        self._to_edge.counters.first_rtp_after_mark = None
        self._to_client.counters.first_rtp_after_mark = None

    async def wait_for(
        self, predicate: Callable[[RelayStats], bool], *, within: float
    ) -> RelayStats:
        """Wait until ``predicate(stats)`` holds, re-checked whenever a counter changes.

        Returns the first snapshot for which it held; raises :class:`TimeoutError` after
        ``within`` seconds.
        """
        stats = self.stats()
        if predicate(stats):
            return stats
        waiter: asyncio.Future[RelayStats] = asyncio.get_running_loop().create_future()
        entry = (predicate, waiter)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(within):
                return await waiter
        finally:
            self._waiters.remove(entry)

    def _changed(self) -> None:
        if not self._waiters:
            return
        stats = self.stats()
        for predicate, waiter in self._waiters:
            if not waiter.done() and predicate(stats):
                waiter.set_result(stats)

    # ------------------------------------------------------------------ life cycle

    async def __aenter__(self) -> Self:
        if self._endpoints:
            raise InvalidStateError("the relay is already running")
        try:
            # Datagrams from the client leave through the edge-facing socket and vice versa.
            self._to_client.transport = await self._open(self._from_client)
            self._to_edge.transport = await self._open(self._from_edge)
        except BaseException:
            await self.aclose()
            raise
        self._client_facing = _address(self._to_client.transport)
        self._edge_facing = _address(self._to_edge.transport)
        return self

    async def _open(
        self, on_datagram: Callable[[bytes, Address], None]
    ) -> asyncio.DatagramTransport:
        sock = _udp_socket(self.host)
        try:
            transport, endpoint = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _Endpoint(on_datagram), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        self._endpoints.append(endpoint)
        return transport

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Drop what is in flight, close both sockets and wait until they are closed."""
        for lane in (self._to_edge, self._to_client):
            lane.cancel()
            if lane.transport is not None:
                lane.transport.close()
                lane.transport = None
        endpoints, self._endpoints = self._endpoints, []
        await asyncio.gather(*(endpoint.closed for endpoint in endpoints))
        self._client_facing = self._edge_facing = None

    def _from_client(self, data: bytes, source: Address) -> None:
        self._client = source
        self._to_edge.accept(data, asyncio.get_running_loop())

    def _from_edge(self, data: bytes, source: Address) -> None:
        self._to_client.accept(data, asyncio.get_running_loop())


def _address(transport: asyncio.BaseTransport) -> Address:
    sockname = transport.get_extra_info("sockname")
    return (str(sockname[0]), int(sockname[1]))


# ---------------------------------------------------------------------- TCP proxy


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class TcpDelayProxy:
    """A TCP proxy on ``host`` that delays every chunk by ``one_way_delay`` seconds each way.

    ``async with TcpDelayProxy(("127.0.0.1", sandbox.port), one_way_delay=0.05) as proxy:`` listens
    on ``127.0.0.1:{proxy.port}``; each accepted connection opens one to ``target`` and copies
    bytes both ways unchanged (HTTP, WebSockets: the ``Host`` header still names the proxy). A
    reader and a writer per direction share a FIFO of (deadline, bytes), so a chunk waits the delay
    and no longer; half-closes (EOF) are forwarded after the delay too, a reset aborts both sides.
    Both sockets use ``TCP_NODELAY``. Leaving the block closes every connection.
    """

    def __init__(
        self,
        target: Address,
        *,
        one_way_delay: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.target: Address = (target[0], int(target[1]))
        self._one_way_delay = _check_delay(one_way_delay)
        self.host = host
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._connections = 0
        self._failed = 0

    @property
    def one_way_delay(self) -> float:
        """Seconds every chunk waits, each way; applies to chunks read from now on."""
        return self._one_way_delay

    @one_way_delay.setter
    def one_way_delay(self, value: float) -> None:
        self._one_way_delay = _check_delay(value)

    @property
    def port(self) -> int:
        """The listening port."""
        if self._port is None:
            raise InvalidStateError("the proxy is not running (use `async with`)")
        return self._port

    @property
    def connections(self) -> int:
        """Connections accepted so far (including those whose target refused)."""
        return self._connections

    @property
    def active_connections(self) -> int:
        """Connections being proxied now."""
        return len(self._handlers)

    @property
    def failed_connections(self) -> int:
        """Accepted connections that could not reach the target (closed at once)."""
        return self._failed

    async def __aenter__(self) -> Self:
        if self._server is not None:
            raise InvalidStateError("the proxy is already running")
        self._server = await asyncio.start_server(
            self._serve, self.host, self._requested_port, reuse_address=True
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop listening, abort every proxied connection and wait for their tasks to finish."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        handlers = list(self._handlers)
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        self._port = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections += 1
        self._handlers.add(task)
        writers = [writer]
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError as exc:
                self._failed += 1
                logger.debug("proxy target %s unreachable: %s", self.target, exc)
                return
            writers.append(up_writer)
            _set_nodelay(writer)
            _set_nodelay(up_writer)
            async with asyncio.TaskGroup() as group:
                for source, sink in ((reader, up_writer), (up_reader, writer)):
                    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_TCP_QUEUE_CHUNKS)
                    group.create_task(self._read(source, queue, writers))
                    group.create_task(self._write(queue, sink, writers))
        except asyncio.CancelledError:
            # The proxy is closing. Not re-raised: asyncio's stream callback would log a
            # cancelled connection handler as an error.
            for each in writers:
                each.transport.abort()
        finally:
            self._handlers.discard(task)
            await _close(writers)

    async def _read(
        self,
        source: asyncio.StreamReader,
        queue: asyncio.Queue[tuple[float, bytes]],
        writers: list[asyncio.StreamWriter],
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                chunk = await source.read(_TCP_CHUNK_BYTES)
                await queue.put((loop.time() + self._one_way_delay, chunk))
                if not chunk:  # EOF travels as an empty chunk, after the delay like data
                    return
        except OSError:
            _abort(writers)
            await queue.put((loop.time(), b""))

    async def _write(
        self,
        queue: asyncio.Queue[tuple[float, bytes]],
        sink: asyncio.StreamWriter,
        writers: list[asyncio.StreamWriter],
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                due, chunk = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not chunk:
                    if sink.can_write_eof() and not sink.is_closing():
                        sink.write_eof()
                    return
                sink.write(chunk)
                await sink.drain()
        except OSError:
            _abort(writers)
            # Keep consuming so the reader never blocks on a full queue of a dead connection.
            while True:
                _, chunk = await queue.get()
                if not chunk:
                    return


def _abort(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.transport.abort()


async def _close(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()
    for writer in writers:
        try:
            async with asyncio.timeout(_TCP_CLOSE_SECONDS):
                await writer.wait_closed()
        except (OSError, TimeoutError):
            writer.transport.abort()
