"""A real packet capture of loopback UDP, to count what actually went over the wire.

Counters inside our own code can only say what our code believes it sent. :class:`LoopbackCapture`
reads the loopback interface with a raw ``AF_PACKET`` socket, like ``tcpdump -i lo udp``, and
classifies every UDP datagram the way a WebRTC endpoint demultiplexes them (RFC 7983): STUN Binding
requests, DTLS ClientHellos (one per DTLS handshake), RTP and RTCP. It is how we prove that ten
calls over a persistent connection cost exactly one DTLS handshake.

.. code-block:: python

    with LoopbackCapture(ports={edge_port}) as capture:
        ...                                   # run the calls (in any thread or event loop)
    summary = capture.summary()
    assert summary.dtls_client_hellos == 1

Requirements: Linux and ``CAP_NET_RAW`` (root). Without them entering the capture raises
:class:`CaptureUnavailableError`, a :class:`~crmphone.errors.UsageError` (run the tests as root or
grant the capability; retrying will not help), chained from the ``OSError``.

On ``lo`` the kernel shows every packet twice, once leaving (``PACKET_OUTGOING``) and once arriving
(``PACKET_HOST``); only the outgoing copy is counted, so each datagram counts once. Only IPv4 is
parsed; IPv6, non-UDP and non-first fragments are skipped. A classic BPF filter attached to the
socket does that selection (and the port filter) in the kernel, so a busy loopback costs the
reader thread little; the same checks are repeated in Python. Packets the kernel had to drop
because the reader fell behind are reported in :attr:`CaptureSummary.kernel_drops`: assertions on
exact counts should also assert that it is zero.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType, TracebackType
from typing import Self

import attrs

from crmphone.errors import UsageError
from crmphone.sandbox.relay import (
    DatagramKind,
    classify_datagram,
    is_dtls_client_hello,
    is_stun_binding_request,
)

__all__ = ["CaptureSummary", "CaptureUnavailableError", "FlowCounts", "LoopbackCapture"]

Flow = tuple[int, int]
"""``(source port, destination port)`` of a UDP datagram."""

_ETH_P_ALL = 0x0003
_ETH_P_IP = 0x0800
_ETH_HEADER = 14
_IPPROTO_UDP = 17
_PACKET_OUTGOING = 4
_SOL_PACKET = 263
_PACKET_STATISTICS = 6
_SO_ATTACH_FILTER = 26
_SO_RCVBUFFORCE = 33
_RECEIVE_BUFFER_BYTES = 16 << 20
_SNAPLEN = 1 << 18
_MAX_FILTER_PORTS = 60
"""Beyond this many ports the BPF jump offsets (8 bits) run out; Python filters alone then."""


class CaptureUnavailableError(UsageError):
    """The packet capture cannot run here: it needs Linux and ``CAP_NET_RAW`` (root)."""


@attrs.frozen
class FlowCounts:
    """What one ``(source port, destination port)`` flow carried."""

    datagrams: int = 0
    payload_bytes: int = 0
    stun_binding_requests: int = 0
    dtls_client_hellos: int = 0
    rtp_packets: int = 0
    rtcp_packets: int = 0


def _read_only(flows: Mapping[Flow, FlowCounts]) -> Mapping[Flow, FlowCounts]:
    return MappingProxyType(dict(flows))


@attrs.frozen
class CaptureSummary:
    """Everything a :class:`LoopbackCapture` counted so far (each datagram once).

    ``payload_bytes`` counts UDP payload bytes. ``dtls_handshake_flows`` holds each ``(source port,
    destination port)`` that carried a DTLS ClientHello. ``flows`` maps every flow seen to its
    :class:`FlowCounts`. ``kernel_drops`` counts packets the kernel dropped because the reader
    fell behind (they are in no other counter).
    """

    udp_datagrams: int = 0
    payload_bytes: int = 0
    stun_binding_requests: int = 0
    dtls_client_hellos: int = 0
    dtls_handshake_flows: frozenset[Flow] = frozenset()
    rtp_packets: int = 0
    rtcp_packets: int = 0
    flows: Mapping[Flow, FlowCounts] = attrs.field(factory=dict, converter=_read_only)
    kernel_drops: int = 0


@attrs.define
class _Tally:
    """Mutable counters of one flow (the reader thread's side of :class:`FlowCounts`)."""

    datagrams: int = 0
    payload_bytes: int = 0
    stun_binding_requests: int = 0
    dtls_client_hellos: int = 0
    rtp_packets: int = 0
    rtcp_packets: int = 0

    def add(self, payload: bytes) -> None:
        self.datagrams += 1
        self.payload_bytes += len(payload)
        if is_stun_binding_request(payload):
            self.stun_binding_requests += 1
            return
        kind = classify_datagram(payload)
        if kind is DatagramKind.DTLS and is_dtls_client_hello(payload):
            self.dtls_client_hellos += 1
        elif kind is DatagramKind.RTP:
            self.rtp_packets += 1
        elif kind is DatagramKind.RTCP:
            self.rtcp_packets += 1

    def freeze(self) -> FlowCounts:
        return FlowCounts(**attrs.asdict(self))


def _parse_udp(frame: bytes) -> tuple[Flow, bytes] | None:
    """``((source port, destination port), payload)`` of an Ethernet/IPv4/UDP frame, else None.

    Loopback frames carry an all-zero Ethernet header with ethertype 0x0800 for IPv4. Fragments
    other than the first are not UDP datagrams on their own and give None.
    """
    if len(frame) < _ETH_HEADER + 20 + 8 or frame[12:14] != b"\x08\x00":
        return None
    ip = memoryview(frame)[_ETH_HEADER:]
    header_length = (ip[0] & 0x0F) * 4
    if ip[0] >> 4 != 4 or ip[9] != _IPPROTO_UDP or header_length < 20:
        return None
    if struct.unpack_from("!H", ip, 6)[0] & 0x1FFF:
        return None
    if len(ip) < header_length + 8:
        return None
    source, destination, length = struct.unpack_from("!HHH", ip, header_length)
    payload = bytes(ip[header_length + 8 : header_length + max(length, 8)])
    return (source, destination), payload


def _bpf_program(ports: frozenset[int] | None) -> bytes:
    """Classic BPF: outgoing IPv4 UDP, not a later fragment, and (optionally) one of ``ports``."""
    accept, drop = (0x06, 0, 0, _SNAPLEN), (0x06, 0, 0, 0)
    head: list[tuple[int, int, int, int]] = [
        (0x20, 0, 0, 0xFFFFF000 + 4),  # ld [SKF_AD_OFF + SKF_AD_PKTTYPE]
        (0x15, 0, 0, _PACKET_OUTGOING),  # jeq #PACKET_OUTGOING (jf patched below)
        (0x28, 0, 0, 12),  # ldh [12]: ethertype
        (0x15, 0, 0, _ETH_P_IP),
        (0x30, 0, 0, 23),  # ldb [23]: IP protocol
        (0x15, 0, 0, _IPPROTO_UDP),
        (0x28, 0, 0, 20),  # ldh [20]: flags and fragment offset
        (0x45, 0, 0, 0x1FFF),  # jset #0x1fff (jt patched below)
        (0xB1, 0, 0, _ETH_HEADER),  # ldxb 4*([14]&0xf): IP header length
    ]
    body: list[tuple[int, int, int, int]] = []
    if ports:
        ordered = sorted(ports)
        for offset in (_ETH_HEADER, _ETH_HEADER + 2):  # source port, then destination port
            body.append((0x48, 0, 0, offset))  # ldh [x + offset]
            body.extend((0x15, 0, 0, port) for port in ordered)  # jeq #port (jt patched below)
        body.append(drop)
    program = [*head, *body, accept, drop]
    accept_at, drop_at = len(program) - 2, len(program) - 1
    for index, (code, jt, jf, k) in enumerate(program):
        if index >= len(head) and code == 0x15:
            jt = accept_at - index - 1
        elif index < len(head) and code == 0x15:
            jf = drop_at - index - 1
        elif code == 0x45:
            jt = drop_at - index - 1
        program[index] = (code, jt, jf, k)
    return b"".join(struct.pack("HBBI", *instruction) for instruction in program)


def _attach_filter(sock: socket.socket, program: bytes) -> None:
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)


class LoopbackCapture:
    """Count the UDP datagrams crossing the loopback interface while the ``with`` block runs.

    ``ports``: count only datagrams from or to one of these UDP ports (None: every datagram).
    A reader thread does the work; it wakes every ``poll_interval`` seconds to notice the end of
    the block, and on exit reads what the kernel has already queued before stopping, so a datagram
    sent inside the block is counted by the time the block ends. :meth:`summary` and
    :meth:`wait_until` may be called from any thread, during or after the capture.
    """

    def __init__(
        self,
        *,
        ports: Iterable[int] | None = None,
        interface: str = "lo",
        poll_interval: float = 0.05,
    ) -> None:
        self.ports: frozenset[int] | None = None if ports is None else frozenset(ports)
        self.interface = interface
        self.poll_interval = poll_interval
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._flows: dict[Flow, _Tally] = {}
        self._kernel_drops = 0
        self._error: BaseException | None = None

    def __enter__(self) -> Self:
        if self._thread is not None:
            raise UsageError("this capture is already running")
        self._socket = self._open()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"loopback-capture-{self.interface}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Read what is already queued, stop the reader thread and close the socket."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join()
        sock, self._socket = self._socket, None
        if sock is not None:
            self._read_statistics(sock)
            sock.close()
        if self._error is not None:
            raise CaptureUnavailableError(
                f"the capture on {self.interface} failed: {self._error}"
            ) from self._error

    def summary(self) -> CaptureSummary:
        """A frozen snapshot of the counts so far."""
        with self._changed:
            flows = {flow: tally.freeze() for flow, tally in self._flows.items()}
            kernel_drops = self._kernel_drops
        return CaptureSummary(
            udp_datagrams=sum(counts.datagrams for counts in flows.values()),
            payload_bytes=sum(counts.payload_bytes for counts in flows.values()),
            stun_binding_requests=sum(counts.stun_binding_requests for counts in flows.values()),
            dtls_client_hellos=sum(counts.dtls_client_hellos for counts in flows.values()),
            dtls_handshake_flows=frozenset(
                flow for flow, counts in flows.items() if counts.dtls_client_hellos
            ),
            rtp_packets=sum(counts.rtp_packets for counts in flows.values()),
            rtcp_packets=sum(counts.rtcp_packets for counts in flows.values()),
            flows=flows,
            kernel_drops=kernel_drops,
        )

    def wait_until(
        self, predicate: Callable[[CaptureSummary], bool], *, within: float
    ) -> CaptureSummary:
        """Block until ``predicate(summary)`` holds; raise :class:`TimeoutError` after ``within`` s.

        Blocks the calling thread: from a coroutine, run it with :func:`asyncio.to_thread`.
        """
        deadline = time.monotonic() + within
        with self._changed:
            while True:
                summary = self.summary()
                if predicate(summary):
                    return summary
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"the capture did not see the expected traffic: {summary}")
                self._changed.wait(remaining)

    # ------------------------------------------------------------------ the reader thread

    def _open(self) -> socket.socket:
        if not sys.platform.startswith("linux"):
            raise CaptureUnavailableError("packet capture needs Linux (AF_PACKET sockets)")
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
        except OSError as exc:
            raise CaptureUnavailableError(
                f"cannot open a raw packet socket ({exc.strerror}): run as root or grant "
                "CAP_NET_RAW"
            ) from exc
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _RECEIVE_BUFFER_BYTES)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER_BYTES)
            ports = self.ports if self.ports and len(self.ports) <= _MAX_FILTER_PORTS else None
            _attach_filter(sock, _bpf_program(ports))
            sock.bind((self.interface, 0))
            sock.settimeout(self.poll_interval)
            # The socket saw traffic between socket() and the filter; forget those counts.
            self._read_statistics(sock)
            self._kernel_drops = 0
        except OSError as exc:
            sock.close()
            raise CaptureUnavailableError(
                f"cannot capture on interface {self.interface!r}: {exc}"
            ) from exc
        return sock

    def _run(self) -> None:
        sock = self._socket
        assert sock is not None
        try:
            while not self._stop.is_set():
                try:
                    frame, address = sock.recvfrom(_SNAPLEN)
                except TimeoutError:
                    self._read_statistics(sock)
                    continue
                self._count(frame, address)
            # Whatever was sent before the block ended is already queued: count it too.
            sock.setblocking(False)
            while True:
                try:
                    frame, address = sock.recvfrom(_SNAPLEN)
                except BlockingIOError:
                    break
                self._count(frame, address)
        except OSError as exc:
            self._error = exc

    def _count(self, frame: bytes, address: tuple[object, ...]) -> None:
        # The BPF filter already selects outgoing IPv4 UDP; frames queued before it was attached
        # are filtered here.
        if address[2] != _PACKET_OUTGOING:
            return
        parsed = _parse_udp(frame)
        if parsed is None:
            return
        flow, payload = parsed
        if self.ports is not None and flow[0] not in self.ports and flow[1] not in self.ports:
            return
        with self._changed:
            self._flows.setdefault(flow, _Tally()).add(payload)
            self._changed.notify_all()

    def _read_statistics(self, sock: socket.socket) -> None:
        # PACKET_STATISTICS returns (packets, drops) since the last read and resets them.
        try:
            raw = sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8)
        except OSError:
            return
        _, drops = struct.unpack("II", raw)
        with self._changed:
            self._kernel_drops += drops
