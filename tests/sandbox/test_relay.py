"""The user-space network emulation: the delaying UDP relay and the delaying TCP proxy."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import attrs
import httpx
import pytest
import uvicorn
from aiortc import MediaStreamTrack, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from crmphone._webrtc import (
    LOOPBACK_ICE,
    create_peer_connection,
    replace_candidates,
    sdp_candidates,
    set_local_description,
)
from crmphone.errors import ConfigError, InvalidStateError
from crmphone.sandbox.relay import (
    DatagramKind,
    RelayStats,
    TcpDelayProxy,
    UdpRelay,
    classify_datagram,
    is_dtls_client_hello,
    is_stun_binding_request,
)

Address = tuple[str, int]

DELAY = 0.05
SLACK = 0.1
"""Generous: a loaded CI machine may run the relay's timer late, never early."""

STUN_BINDING_REQUEST = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(range(12))
STUN_BINDING_SUCCESS = b"\x01\x01\x00\x00\x21\x12\xa4\x42" + bytes(range(12))
# content type 22, DTLS 1.2 (0xfefd), epoch 0, sequence 0, length, then handshake type 1.
DTLS_CLIENT_HELLO = b"\x16\xfe\xfd\x00\x00" + bytes(6) + b"\x00\x10" + b"\x01" + bytes(15)
# An encrypted Finished: a handshake record in epoch 1 whose ciphertext happens to start with 1.
DTLS_ENCRYPTED_HANDSHAKE = b"\x16\xfe\xfd\x00\x01" + bytes(6) + b"\x00\x10" + b"\x01" + bytes(15)
DTLS_APPLICATION_DATA = b"\x17\xfe\xfd\x00\x01" + bytes(6) + b"\x00\x04" + bytes(4)
RTP = b"\x80\x6f\x00\x01" + bytes(8) + bytes(160)  # PT 111 (opus), no marker
RTP_MARKER = b"\x80\xef\x00\x02" + bytes(8) + bytes(160)  # PT 111 with the marker bit: 0xef
RTCP_SENDER_REPORT = b"\x80\xc8\x00\x06" + bytes(24)
RTCP_RECEIVER_REPORT = b"\x81\xc9\x00\x07" + bytes(28)


class Peer(asyncio.DatagramProtocol):
    """A UDP socket on loopback that records every datagram with its monotonic arrival time."""

    def __init__(self) -> None:
        self.received: list[tuple[float, bytes, Address]] = []
        self._arrived = asyncio.Event()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector datagram transport does not subclass DatagramTransport on 3.11.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((time.monotonic(), data, (addr[0], addr[1])))
        self._arrived.set()

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (host, port)

    @property
    def payloads(self) -> list[bytes]:
        return [data for _, data, _ in self.received]

    def send(self, data: bytes, to: Address) -> float:
        """Send ``data``; returns the monotonic time just before sending."""
        assert self.transport is not None
        sent_at = time.monotonic()
        self.transport.sendto(data, to)
        return sent_at

    async def wait_count(self, count: int, *, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()


@contextlib.asynccontextmanager
async def open_peer() -> AsyncIterator[Peer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # Bursts in these tests exceed the default receive buffer (~200 KB): the peer must not drop.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    transport, peer = await asyncio.get_running_loop().create_datagram_endpoint(Peer, sock=sock)
    try:
        yield peer
    finally:
        transport.close()


@pytest.fixture
async def client() -> AsyncIterator[Peer]:
    """The WebRTC client's socket, stand-in."""
    async with open_peer() as peer:
        yield peer


@pytest.fixture
async def edge() -> AsyncIterator[Peer]:
    """The media edge's socket, stand-in."""
    async with open_peer() as peer:
        yield peer


@pytest.fixture
async def relay(edge: Peer) -> AsyncIterator[UdpRelay]:
    """A relay with no delay, aimed at ``edge``."""
    async with UdpRelay() as running:
        running.connect(edge=edge.address)
        yield running


def sequenced(number: int) -> bytes:
    """An RTP-looking datagram carrying ``number``."""
    return b"\x80\x00" + struct.pack("!I", number) + bytes(100)


def sequence_of(data: bytes) -> int:
    return int(struct.unpack_from("!I", data, 2)[0])


# ---------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("datagram", "kind"),
    [
        (STUN_BINDING_REQUEST, DatagramKind.STUN),
        (STUN_BINDING_SUCCESS, DatagramKind.STUN),
        (DTLS_CLIENT_HELLO, DatagramKind.DTLS),
        (DTLS_APPLICATION_DATA, DatagramKind.DTLS),
        (RTP, DatagramKind.RTP),
        (RTP_MARKER, DatagramKind.RTP),
        (RTCP_SENDER_REPORT, DatagramKind.RTCP),
        (RTCP_RECEIVER_REPORT, DatagramKind.RTCP),
        (b"", DatagramKind.OTHER),
        (b"\x10zrtp", DatagramKind.OTHER),
        (b"\x40\x00turn-channel", DatagramKind.OTHER),
        (b"\xffjunk", DatagramKind.OTHER),
    ],
)
def test_datagrams_are_classified_by_their_first_bytes(datagram: bytes, kind: DatagramKind) -> None:
    """RFC 7983 ranges decide the kind; RFC 5761's second-byte range tells RTCP from RTP."""
    assert classify_datagram(datagram) is kind


def test_only_a_plaintext_handshake_record_of_type_1_is_a_client_hello() -> None:
    """Epoch 1 handshake records are encrypted and never count as a ClientHello."""
    assert is_dtls_client_hello(DTLS_CLIENT_HELLO)
    assert not is_dtls_client_hello(DTLS_ENCRYPTED_HANDSHAKE)
    assert not is_dtls_client_hello(DTLS_APPLICATION_DATA)
    assert not is_dtls_client_hello(DTLS_CLIENT_HELLO[:13])


def test_a_binding_request_needs_its_type_and_the_magic_cookie() -> None:
    """Binding success responses and cookie-less messages are not binding requests."""
    assert is_stun_binding_request(STUN_BINDING_REQUEST)
    assert not is_stun_binding_request(STUN_BINDING_SUCCESS)
    assert not is_stun_binding_request(b"\x00\x01\x00\x00" + bytes(16))
    assert not is_stun_binding_request(STUN_BINDING_REQUEST[:19])


# ---------------------------------------------------------------------- UDP relay


async def test_datagrams_cross_both_ways_after_the_one_way_delay(client: Peer, edge: Peer) -> None:
    """Each way a datagram leaves the relay's other socket no sooner than the delay."""
    async with UdpRelay(one_way_delay=DELAY) as relay:
        relay.connect(edge=edge.address)
        sent = [client.send(sequenced(n), relay.client_facing) for n in range(5)]
        await edge.wait_count(5)
        replies = [edge.send(sequenced(n), relay.edge_facing) for n in range(5)]
        await client.wait_count(5)

    for sent_at, (arrived_at, _, _) in zip(sent, edge.received, strict=True):
        assert DELAY <= arrived_at - sent_at < DELAY + SLACK
    for sent_at, (arrived_at, _, _) in zip(replies, client.received, strict=True):
        assert DELAY <= arrived_at - sent_at < DELAY + SLACK
    assert [sequence_of(data) for data in edge.payloads] == list(range(5))
    assert [sequence_of(data) for data in client.payloads] == list(range(5))


async def test_the_far_side_sees_only_the_relays_sockets(client: Peer, edge: Peer) -> None:
    """The edge sees edge_facing as the client's address; the client sees client_facing."""
    async with UdpRelay() as relay:
        relay.connect(edge=edge.address)
        client.send(b"ping", relay.client_facing)
        await edge.wait_count(1)
        edge.send(b"pong", relay.edge_facing)
        await client.wait_count(1)
        assert edge.received[0][2] == relay.edge_facing
        assert client.received[0][2] == relay.client_facing
        assert relay.client == client.address
        assert relay.edge == edge.address


async def test_order_is_kept_under_load_and_when_the_delay_drops(client: Peer, edge: Peer) -> None:
    """A burst arrives in the order sent, even when the delay is lowered mid-burst."""
    async with UdpRelay(one_way_delay=0.02) as relay:
        relay.connect(edge=edge.address)
        for number in range(1000):
            if number == 500:
                relay.one_way_delay = 0.0
            client.send(sequenced(number), relay.client_facing)
            if number % 100 == 99:
                await asyncio.sleep(0)  # let the relay read before the kernel buffer fills
        await edge.wait_count(1000)
        stats = relay.stats()

    assert [sequence_of(data) for data in edge.payloads] == list(range(1000))
    assert stats.to_edge.datagrams == stats.to_edge.received == 1000
    assert stats.to_edge.payload_bytes == 1000 * len(sequenced(0))


async def lossy_run(client: Peer, edge: Peer, seed: int) -> tuple[RelayStats, list[int]]:
    async with UdpRelay(loss=0.5, seed=seed) as relay:
        relay.connect(edge=edge.address)
        for number in range(400):
            client.send(sequenced(number), relay.client_facing)
            if number % 100 == 99:
                await asyncio.sleep(0)
        stats = await relay.wait_for(
            lambda s: s.to_edge.datagrams + s.to_edge.dropped == 400, within=5.0
        )
        await edge.wait_count(stats.to_edge.datagrams)
    received = [sequence_of(data) for data in edge.payloads]
    edge.received.clear()
    return stats, received


async def test_loss_drops_the_configured_share_reproducibly(client: Peer, edge: Peer) -> None:
    """With loss 0.5 about half is dropped, and the same seed drops the same datagrams."""
    first_stats, first = await lossy_run(client, edge, seed=7)
    second_stats, second = await lossy_run(client, edge, seed=7)

    assert 120 < first_stats.to_edge.dropped < 280
    assert len(first) == first_stats.to_edge.datagrams == 400 - first_stats.to_edge.dropped
    assert first == sorted(first)
    assert second == first
    assert without_times(second_stats) == without_times(first_stats)


def without_times(stats: RelayStats) -> RelayStats:
    return RelayStats(
        to_edge=attrs.evolve(stats.to_edge, first_rtp_after_mark=None),
        to_client=attrs.evolve(stats.to_client, first_rtp_after_mark=None),
    )


async def test_blackhole_drops_everything_both_ways_in_flight_too(client: Peer, edge: Peer) -> None:
    """While blackholed nothing crosses, not even what was already delayed; then traffic resumes."""
    async with UdpRelay(one_way_delay=DELAY) as relay:
        relay.connect(edge=edge.address, client=client.address)
        client.send(b"in flight", relay.client_facing)
        await relay.wait_for(lambda s: s.to_edge.received == 1, within=5.0)
        relay.blackhole = True
        client.send(b"lost", relay.client_facing)
        edge.send(b"lost", relay.edge_facing)
        stats = await relay.wait_for(lambda s: s.dropped == 3, within=5.0)
        assert stats.to_edge.dropped == 2
        assert stats.to_client.dropped == 1

        relay.blackhole = False
        client.send(b"after", relay.client_facing)
        edge.send(b"after", relay.edge_facing)
        await edge.wait_count(1)
        await client.wait_count(1)

    # Order is kept per direction, so anything that leaked through would have arrived first.
    assert edge.payloads == [b"after"]
    assert client.payloads == [b"after"]


async def test_crossing_datagrams_are_counted_by_kind(
    client: Peer, edge: Peer, relay: UdpRelay
) -> None:
    """STUN, DTLS (ClientHellos apart), RTP and RTCP are counted per direction."""
    to_edge = [STUN_BINDING_REQUEST, DTLS_CLIENT_HELLO, DTLS_APPLICATION_DATA, RTP, RTP_MARKER]
    to_edge += [RTCP_RECEIVER_REPORT, b"\xffjunk"]
    for datagram in to_edge:
        client.send(datagram, relay.client_facing)
    await edge.wait_count(len(to_edge))
    to_client = [STUN_BINDING_SUCCESS, DTLS_ENCRYPTED_HANDSHAKE, RTCP_SENDER_REPORT, RTP]
    for datagram in to_client:
        edge.send(datagram, relay.edge_facing)
    await client.wait_count(len(to_client))

    stats = relay.stats()
    up, down = stats.to_edge, stats.to_client
    assert (up.stun, up.dtls, up.dtls_client_hellos, up.rtp, up.rtcp, up.other) == (
        1,
        2,
        1,
        2,
        1,
        1,
    )
    assert (down.stun, down.dtls, down.dtls_client_hellos, down.rtp, down.rtcp) == (1, 1, 0, 1, 1)
    assert up.datagrams == up.received == len(to_edge)
    assert up.payload_bytes == sum(map(len, to_edge))
    assert down.payload_bytes == sum(map(len, to_client))
    assert stats.dropped == 0


async def test_the_client_address_is_learnt_and_followed(edge: Peer, relay: UdpRelay) -> None:
    """Before the client speaks there is nowhere to send; then replies follow its latest port."""
    edge.send(b"too early", relay.edge_facing)
    assert (await relay.wait_for(lambda s: s.to_client.dropped == 1, within=5.0)).dropped == 1
    assert relay.client is None

    async with open_peer() as first, open_peer() as second:
        first.send(b"hello", relay.client_facing)
        await edge.wait_count(1)
        assert relay.client == first.address
        edge.send(b"to first", relay.edge_facing)
        await first.wait_count(1)

        second.send(b"moved", relay.client_facing)
        await edge.wait_count(2)
        assert relay.client == second.address
        edge.send(b"to second", relay.edge_facing)
        await second.wait_count(1)

        assert first.payloads == [b"to first"]
        assert second.payloads == [b"to second"]


async def test_a_configured_client_receives_before_it_speaks(client: Peer, edge: Peer) -> None:
    """connect(client=...) gives edge → client datagrams a destination from the start."""
    async with UdpRelay() as relay:
        relay.connect(edge=edge.address, client=client.address)
        edge.send(b"first", relay.edge_facing)
        await client.wait_count(1)
    assert client.payloads == [b"first"]


async def test_mark_restarts_the_first_rtp_time(client: Peer, edge: Peer, relay: UdpRelay) -> None:
    """first_rtp_after_mark is the delivery of the first RTP packet since the last mark()."""
    assert relay.stats().to_edge.first_rtp_after_mark is None
    client.send(RTCP_RECEIVER_REPORT, relay.client_facing)
    client.send(RTP, relay.client_facing)
    stats = await relay.wait_for(lambda s: s.to_edge.rtp == 1, within=5.0)
    first = stats.to_edge.first_rtp_after_mark
    assert first is not None
    assert stats.to_client.first_rtp_after_mark is None

    relay.mark()
    assert relay.stats().to_edge.first_rtp_after_mark is None
    before = time.monotonic()
    client.send(RTP, relay.client_facing)
    edge.send(RTP, relay.edge_facing)
    stats = await relay.wait_for(lambda s: s.to_edge.rtp == 2 and s.to_client.rtp == 1, within=5.0)
    assert stats.to_edge.first_rtp_after_mark is not None
    assert stats.to_client.first_rtp_after_mark is not None
    assert first < before <= stats.to_edge.first_rtp_after_mark
    assert before <= stats.to_client.first_rtp_after_mark


async def test_wait_for_times_out(relay: UdpRelay) -> None:
    """A condition that never holds ends in TimeoutError, leaving no waiter behind."""
    with pytest.raises(TimeoutError):
        await relay.wait_for(lambda s: s.to_edge.rtp > 0, within=0.05)


async def test_invalid_settings_and_use_outside_the_block_are_refused() -> None:
    """Negative delays, loss outside 0-1 and addresses of a stopped relay raise crmphone errors."""
    with pytest.raises(ConfigError, match="one_way_delay"):
        UdpRelay(one_way_delay=-0.1)
    with pytest.raises(ConfigError, match="loss"):
        UdpRelay(loss=1.5)
    relay = UdpRelay()
    with pytest.raises(ConfigError):
        relay.loss = float("nan")
    with pytest.raises(InvalidStateError):
        _ = relay.client_facing
    with pytest.raises(ConfigError):
        TcpDelayProxy(("127.0.0.1", 9), one_way_delay=-1.0)
    with pytest.raises(InvalidStateError):
        _ = TcpDelayProxy(("127.0.0.1", 9)).port


async def test_closing_drops_what_is_in_flight_and_frees_the_sockets(
    client: Peer, edge: Peer
) -> None:
    """A datagram still delayed at close never arrives; both ports can be bound again."""
    async with UdpRelay(one_way_delay=10.0) as relay:
        relay.connect(edge=edge.address)
        client.send(RTP, relay.client_facing)
        await relay.wait_for(lambda s: s.to_edge.received == 1, within=5.0)
        ports = (relay.client_facing, relay.edge_facing)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    with pytest.raises(InvalidStateError):
        _ = relay.client_facing
    for address in ports:
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=address
        )
        transport.close()
    assert edge.received == []


# ---------------------------------------------------------------------- aiortc through the relay


async def consume(track: MediaStreamTrack) -> None:
    """Read a remote track until it ends (an unconsumed track grows memory without bound)."""
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()


async def test_two_peer_connections_talk_through_the_relay() -> None:
    """ICE, one DTLS handshake from the client (the DTLS client) and RTP both ways cross it."""
    consumers: list[asyncio.Task[None]] = []
    edge_pc = create_peer_connection(LOOPBACK_ICE)
    client_pc = create_peer_connection(LOOPBACK_ICE)
    for pc in (edge_pc, client_pc):
        pc.on("track", lambda track: consumers.append(asyncio.create_task(consume(track))))
    try:
        async with UdpRelay(one_way_delay=0.01) as relay:
            edge_pc.addTrack(AudioStreamTrack())
            await set_local_description(edge_pc, await edge_pc.createOffer(), LOOPBACK_ICE)
            offer = edge_pc.localDescription.sdp
            (edge_address,) = set(sdp_candidates(offer))
            relay.connect(edge=edge_address)

            await client_pc.setRemoteDescription(
                RTCSessionDescription(replace_candidates(offer, *relay.client_facing), "offer")
            )
            client_pc.addTrack(AudioStreamTrack())
            await set_local_description(client_pc, await client_pc.createAnswer(), LOOPBACK_ICE)
            answer = replace_candidates(client_pc.localDescription.sdp, *relay.edge_facing)
            assert set(sdp_candidates(answer)) == {relay.edge_facing}
            await edge_pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

            stats = await relay.wait_for(
                lambda s: s.to_edge.rtp >= 5 and s.to_client.rtp >= 5, within=15.0
            )
            assert edge_pc.connectionState == "connected"
            assert client_pc.connectionState == "connected"
    finally:
        await client_pc.close()
        await edge_pc.close()
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)

    assert stats.to_edge.dtls_client_hellos == 1
    assert stats.to_client.dtls_client_hellos == 0
    assert stats.to_edge.stun > 0
    assert stats.to_client.stun > 0
    assert stats.to_edge.dtls > 0
    assert stats.to_client.dtls > 0
    assert stats.dropped == 0


# ---------------------------------------------------------------------- TCP proxy


@pytest.fixture
async def echo_server() -> AsyncIterator[Address]:
    """A TCP server on loopback that echoes everything and half-closes after the client does."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
            writer.write_eof()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        host, port = server.sockets[0].getsockname()[:2]
        yield (host, port)
    finally:
        server.close()
        await server.wait_closed()


async def test_a_round_trip_through_the_proxy_costs_two_delays(echo_server: Address) -> None:
    """An echo through the proxy takes at least 2 x one_way_delay, and not much more."""
    async with TcpDelayProxy(echo_server, one_way_delay=DELAY) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            for _ in range(3):
                started = time.monotonic()
                writer.write(b"ping")
                await writer.drain()
                assert await reader.readexactly(4) == b"ping"
                elapsed = time.monotonic() - started
                assert 2 * DELAY <= elapsed < 2 * DELAY + SLACK
        finally:
            writer.close()
            await writer.wait_closed()
        assert proxy.connections == 1


async def test_chunks_are_pipelined_not_serialised(echo_server: Address) -> None:
    """Ten chunks sent back to back come back after one round trip, not ten."""
    async with TcpDelayProxy(echo_server, one_way_delay=DELAY) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            started = time.monotonic()
            for number in range(10):
                writer.write(b"%02d" % number)
                await writer.drain()
                await asyncio.sleep(0.005)
            echoed = await reader.readexactly(20)
            elapsed = time.monotonic() - started
        finally:
            writer.close()
            await writer.wait_closed()
    assert echoed == b"".join(b"%02d" % number for number in range(10))
    assert elapsed < 2 * DELAY + 10 * 0.005 + SLACK


async def test_a_large_transfer_arrives_intact_and_eof_is_forwarded(echo_server: Address) -> None:
    """8 MiB go there and back unchanged; the client's half-close reaches the server and back."""
    payload = os.urandom(8 << 20)
    async with TcpDelayProxy(echo_server, one_way_delay=0.005) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)

        async def send() -> None:
            writer.write(payload)
            await writer.drain()
            writer.write_eof()

        try:
            sender = asyncio.create_task(send())
            echoed = await reader.read()  # until the server's EOF, forwarded by the proxy
            await sender
        finally:
            writer.close()
            await writer.wait_closed()
    assert echoed == payload


async def test_a_refused_target_closes_the_client_connection() -> None:
    """When the target does not listen, the client sees EOF and the failure is counted."""
    placeholder = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = placeholder.sockets[0].getsockname()[1]
    placeholder.close()
    await placeholder.wait_closed()
    async with TcpDelayProxy(("127.0.0.1", port)) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            assert await asyncio.wait_for(reader.read(), 5.0) == b""
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        assert proxy.failed_connections == 1


async def test_closing_the_proxy_aborts_open_connections(echo_server: Address) -> None:
    """Leaving the block ends every proxied connection and leaves no task behind."""
    async with TcpDelayProxy(echo_server) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        assert proxy.active_connections == 1
    try:
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(reader.read(), 5.0) == b""
        assert proxy.active_connections == 0
        assert asyncio.all_tasks() == {asyncio.current_task()}
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class QuietServer(uvicorn.Server):
    """uvicorn, leaving the test process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def echo_host(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app answering every request with the Host header it received, as JSON."""
    assert scope["type"] == "http"
    body = json.dumps({"host": dict(scope["headers"])[b"host"].decode()}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def http_server() -> AsyncIterator[Address]:
    """A real uvicorn HTTP server on loopback running :func:`echo_host`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(echo_host, lifespan="off", log_config=None, access_log=False)
    server = QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(5.0):
            while not server.started:  # uvicorn offers no event to await
                await asyncio.sleep(0.005)
        yield ("127.0.0.1", sock.getsockname()[1])
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_a_real_http_request_crosses_the_proxy(http_server: Address) -> None:
    """httpx talks to uvicorn through the proxy over one kept-alive connection; Host is as sent."""
    async with (
        TcpDelayProxy(http_server, one_way_delay=0.01) as proxy,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{proxy.port}", timeout=5.0) as http,
    ):
        first = await http.get("/one")
        second = await http.get("/two")
        assert first.status_code == second.status_code == 200
        assert first.json() == {"host": f"127.0.0.1:{proxy.port}"}
        assert proxy.connections == 1


async def test_a_websocket_crosses_the_proxy_with_its_host_header_unchanged() -> None:
    """A websockets client and server exchange messages; the server sees the proxy as Host."""
    hosts: list[str] = []

    async def echo(connection: ServerConnection) -> None:
        assert connection.request is not None
        hosts.append(connection.request.headers["Host"])
        async for message in connection:
            await connection.send(message)

    async with serve(echo, "127.0.0.1", 0) as ws_server:
        port = next(iter(ws_server.sockets)).getsockname()[1]
        async with TcpDelayProxy(("127.0.0.1", port), one_way_delay=0.01) as proxy:
            async with connect(f"ws://127.0.0.1:{proxy.port}/echo") as websocket:
                for text in ("one", "two", "x" * 200_000):
                    await websocket.send(text)
                    assert await websocket.recv() == text
            assert hosts == [f"127.0.0.1:{proxy.port}"]
