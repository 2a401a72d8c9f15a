"""The loopback packet capture counts each UDP datagram on the wire exactly once, by kind."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

from crmphone.errors import UsageError
from crmphone.sandbox.relay import UdpRelay
from crmphone.testing.capture import CaptureUnavailableError, FlowCounts, LoopbackCapture

STUN_BINDING_REQUEST = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(range(12))
STUN_BINDING_SUCCESS = b"\x01\x01\x00\x00\x21\x12\xa4\x42" + bytes(range(12))
DTLS_CLIENT_HELLO = b"\x16\xfe\xfd\x00\x00" + bytes(6) + b"\x00\x10" + b"\x01" + bytes(15)
DTLS_ENCRYPTED_HANDSHAKE = b"\x16\xfe\xfd\x00\x01" + bytes(6) + b"\x00\x10" + b"\x01" + bytes(15)
RTP = b"\x80\x6f\x00\x01" + bytes(8) + bytes(160)
RTCP_SENDER_REPORT = b"\x80\xc8\x00\x06" + bytes(24)


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    return sock


def port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two UDP sockets on 127.0.0.1."""
    first, second = udp_socket(), udp_socket()
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def test_crafted_datagrams_are_seen_once_each_and_classified(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """On lo each packet passes twice; the capture counts it once, by kind and by flow."""
    a, b = pair
    with LoopbackCapture(ports={port(a), port(b)}) as capture:
        for datagram in (STUN_BINDING_REQUEST, DTLS_CLIENT_HELLO, RTP, RTCP_SENDER_REPORT):
            a.sendto(datagram, b.getsockname())
        for datagram in (STUN_BINDING_SUCCESS, DTLS_ENCRYPTED_HANDSHAKE, RTP):
            b.sendto(datagram, a.getsockname())
        live = capture.wait_until(lambda s: s.udp_datagrams >= 7, within=5.0)
    summary = capture.summary()

    assert live.udp_datagrams == 7
    assert summary.kernel_drops == 0
    assert summary.udp_datagrams == 7
    assert summary.stun_binding_requests == 1
    assert summary.dtls_client_hellos == 1
    assert summary.dtls_handshake_flows == {(port(a), port(b))}
    assert summary.rtp_packets == 2
    assert summary.rtcp_packets == 1
    assert summary.payload_bytes == sum(
        map(len, [STUN_BINDING_REQUEST, DTLS_CLIENT_HELLO, RTP, RTCP_SENDER_REPORT])
    ) + sum(map(len, [STUN_BINDING_SUCCESS, DTLS_ENCRYPTED_HANDSHAKE, RTP]))
    assert summary.flows == {
        (port(a), port(b)): FlowCounts(
            datagrams=4,
            payload_bytes=len(STUN_BINDING_REQUEST + DTLS_CLIENT_HELLO + RTP + RTCP_SENDER_REPORT),
            stun_binding_requests=1,
            dtls_client_hellos=1,
            rtp_packets=1,
            rtcp_packets=1,
        ),
        (port(b), port(a)): FlowCounts(
            datagrams=3,
            payload_bytes=len(STUN_BINDING_SUCCESS + DTLS_ENCRYPTED_HANDSHAKE + RTP),
            rtp_packets=1,
        ),
    }


def test_what_was_sent_inside_the_block_is_counted_when_it_ends(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """Leaving the block reads what the kernel already queued: no wait needed for exact counts."""
    a, b = pair
    with LoopbackCapture(ports={port(b)}) as capture:
        for _ in range(2000):
            a.sendto(RTP, b.getsockname())
    summary = capture.summary()
    assert summary.kernel_drops == 0
    assert summary.rtp_packets == summary.udp_datagrams == 2000


def test_the_port_filter_keeps_only_matching_datagrams(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """Datagrams neither from nor to a filtered port are ignored; either end matching counts."""
    a, b = pair
    with udp_socket() as c, LoopbackCapture(ports={port(b)}) as capture:
        a.sendto(RTP, c.getsockname())  # neither end filtered
        c.sendto(RTP, a.getsockname())
        a.sendto(DTLS_CLIENT_HELLO, b.getsockname())  # to b
        b.sendto(STUN_BINDING_REQUEST, c.getsockname())  # from b
        c_port = port(c)
    summary = capture.summary()
    assert set(summary.flows) == {(port(a), port(b)), (port(b), c_port)}
    assert summary.udp_datagrams == 2
    assert summary.rtp_packets == 0
    assert (summary.dtls_client_hellos, summary.stun_binding_requests) == (1, 1)


def test_without_a_filter_every_udp_datagram_on_lo_is_counted(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """No port filter: our flow is there with exact counts (other traffic may be too)."""
    a, b = pair
    with LoopbackCapture() as capture:
        a.sendto(DTLS_CLIENT_HELLO, b.getsockname())
        a.sendto(RTP, b.getsockname())
    summary = capture.summary()
    assert summary.flows[(port(a), port(b))] == FlowCounts(
        datagrams=2,
        payload_bytes=len(DTLS_CLIENT_HELLO + RTP),
        dtls_client_hellos=1,
        rtp_packets=1,
    )
    assert (port(a), port(b)) in summary.dtls_handshake_flows


def test_tcp_on_a_filtered_port_is_not_counted() -> None:
    """Only UDP is parsed: a TCP exchange on a watched port leaves every counter at zero."""
    server = socket.create_server(("127.0.0.1", 0))
    with (
        server,
        LoopbackCapture(ports={port(server)}) as capture,
        socket.create_connection(server.getsockname(), timeout=5.0) as connection,
    ):
        accepted, _ = server.accept()
        with accepted:
            connection.sendall(RTP)
            assert accepted.recv(1024)
    assert capture.summary().udp_datagrams == 0


def test_the_reader_thread_stops_promptly() -> None:
    """Leaving the block takes about one poll interval, not longer."""
    capture = LoopbackCapture(ports={9})
    with capture:
        started = time.monotonic()
    assert time.monotonic() - started < 0.5
    assert capture.summary().udp_datagrams == 0


def test_wait_until_times_out_when_the_traffic_never_comes() -> None:
    """wait_until raises TimeoutError naming what was seen."""
    with LoopbackCapture(ports={9}) as capture, pytest.raises(TimeoutError, match="udp_datagrams"):
        capture.wait_until(lambda s: s.udp_datagrams > 0, within=0.05)


def test_an_unusable_interface_raises_capture_unavailable() -> None:
    """The error is a crmphone UsageError chained from the OSError, raised on entering."""
    capture = LoopbackCapture(interface="nosuchif0")
    with pytest.raises(CaptureUnavailableError, match="nosuchif0") as raised:
        capture.__enter__()
    assert isinstance(raised.value, UsageError)
    assert isinstance(raised.value.__cause__, OSError)


async def test_a_client_hello_through_the_relay_crosses_the_wire_twice() -> None:
    """Client → relay and relay → edge are two hops: two handshake flows, one ClientHello each."""
    with udp_socket() as client, udp_socket() as edge:
        async with UdpRelay() as relay:
            relay.connect(edge=edge.getsockname())
            watched = {port(client), port(edge)}
            with LoopbackCapture(ports=watched) as capture:
                client.sendto(DTLS_CLIENT_HELLO, relay.client_facing)
                await relay.wait_for(lambda s: s.to_edge.dtls_client_hellos == 1, within=5.0)
                summary = await asyncio.to_thread(
                    capture.wait_until, lambda s: s.udp_datagrams == 2, within=5.0
                )
            assert summary.dtls_handshake_flows == {
                (port(client), relay.client_facing[1]),
                (relay.edge_facing[1], port(edge)),
            }
            assert capture.summary().dtls_client_hellos == 2
